"""What a handler sees (`RunContext`) and what it returns (`Outcome`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import frozen

from loopwright.schemas import ErrorInfo

from .ports import Clock, IdSource

_UNSET: Any = object()


@frozen
class Outcome:
    """A handler's result: the outcome name and, optionally, the run's new data.

    `error` marks the run as failed when it reaches a final state (the handler handled the
    failure, e.g. stored partial text, and lets the workflow finish); `stop_reason` overrides
    the terminal event's stop reason (default `final`).
    """

    name: str
    data: Any = _UNSET
    error: ErrorInfo | None = None
    stop_reason: str | None = None

    @property
    def has_data(self) -> bool:
        """Whether the handler replaced the run data."""
        return self.data is not _UNSET


@frozen(kw_only=True)
class RunContext:
    """Read-only view of a run for handlers, guards and hooks."""

    run_id: str
    """The run id."""
    workflow: str
    """Workflow name."""
    state: str
    """The state being executed."""
    attempt: int
    """1 for the first attempt of this state, then 2, 3... on retries."""
    seq: int
    """States completed before this one."""
    params: Mapping[str, Any]
    """Effective params."""
    counters: Mapping[str, int]
    """`steps`, `transitions`, `visits.<state>`."""
    data: Any
    """The run's data (structured to the workflow's data type)."""
    inputs: Any
    """The inputs the run started with."""
    key: str | None
    """The caller's grouping key (e.g. agent id)."""
    services: Mapping[str, Any]
    """Whatever the composition root injected (LLM, stores, toolbox...)."""
    clock: Clock
    """Clock port."""
    ids: IdSource
    """Id port."""

    def service(self, name: str) -> Any:
        """Return an injected service, with a helpful error when it is missing."""
        try:
            return self.services[name]
        except KeyError:
            raise LookupError(
                f"state {self.state!r} needs the service {name!r}; pass it to "
                f"Engine(services={{{name!r}: ...}})"
            ) from None
