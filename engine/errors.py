"""Typed errors of the engine; each refines a builtin and says how to fix the problem."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from attrs import frozen


class LoopwrightError(Exception):
    """Base of every error loopwright raises on purpose."""


@frozen
class Problem:
    """One problem found in a workflow file, with its location (`states.stream.on.x`)."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class WorkflowError(LoopwrightError, ValueError):
    """A workflow file is invalid; `problems` lists every problem found, each located."""

    def __init__(self, problems: Sequence[Problem], source: str = "") -> None:
        self.problems = tuple(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        lines = "\n".join(f"  {prefix}{p}" for p in self.problems)
        super().__init__(f"invalid workflow ({len(self.problems)} problem(s)):\n{lines}")


class ResolveError(LoopwrightError, LookupError):
    """A handler, guard, hook or data type reference does not resolve."""


class ParamError(LoopwrightError, TypeError):
    """A param override has an unknown name or the wrong type."""


class StepError(LoopwrightError, RuntimeError):
    """Raised by a handler for a classified failure; retry policies match on `code`."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


class LLMError(StepError):
    """An LLM request failed; `code` is one of the taxonomy in `LLM_ERROR_CODES`."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(code, message, retryable=retryable, retry_after=retry_after)
        self.status = status


LLM_ERROR_CODES = frozenset(
    {
        "rate_limited",
        "server_error",
        "timeout",
        "context_overflow",
        "bad_request",
        "auth",
        "stream_error",
    }
)


class UndeclaredOutcomeError(LoopwrightError, RuntimeError):
    """A handler returned an outcome that the workflow file does not declare for its state."""

    def __init__(self, state: str, outcome: str, declared: Collection[str]) -> None:
        super().__init__(
            f"state {state!r} returned outcome {outcome!r}, which the workflow does not declare "
            f"(declared: {', '.join(sorted(declared)) or 'none'}); add `on.{outcome}` to "
            f"states.{state} or fix the handler"
        )
        self.state = state
        self.outcome = outcome


class NoBranchError(LoopwrightError, RuntimeError):
    """Every branch of an outcome was guarded off (validation prevents this for static guards)."""


class RunNotFoundError(LoopwrightError, LookupError):
    """No run with this id exists in the run store."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r} in the run store; list runs with `loopwright runs`")
        self.run_id = run_id


class StaleWriteError(LoopwrightError, RuntimeError):
    """A checkpoint write was refused: another writer owns the run (newer epoch) or is ahead."""

    def __init__(
        self, run_id: str, epoch: int, seq: int, stored_epoch: int, stored_seq: int
    ) -> None:
        super().__init__(
            f"run {run_id!r}: write at epoch {epoch} seq {seq} refused, the store holds epoch "
            f"{stored_epoch} seq {stored_seq}; another worker took this run over"
        )
        self.run_id = run_id
        self.epoch = epoch
        self.stored_epoch = stored_epoch


class RunFinishedError(LoopwrightError, RuntimeError):
    """The run already ended; it cannot be resumed or advanced."""
