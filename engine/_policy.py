"""Pure helpers of the runner: retry delays, caps and params (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loopwright.schemas import Limits, ParamValue, RetryPolicy

from .errors import LLMError, ParamError, StepError

_MAX_RETRY_AFTER_S = 120.0


def retry_delay(
    policy: RetryPolicy | None, err: StepError, attempt: int, emitted: bool
) -> float | None:
    """Seconds to wait before the next attempt, or None when the error is not retried.

    `Retry-After` wins over the exponential backoff (bounded by two minutes, since a provider
    asking for more than that is better reported than waited for).
    """
    if policy is None or err.code not in policy.on or attempt >= policy.attempts:
        return None
    if emitted and policy.before_output_only:
        return None
    if isinstance(err, LLMError) and not err.retryable:
        return None  # the provider said so (an exhausted quota is a 429 too)
    backoff = min(policy.backoff_ms * 2 ** (attempt - 1), policy.max_backoff_ms) / 1000
    if err.retry_after is not None:
        # A wait longer than the policy's own cap is reported rather than waited for.
        if err.retry_after > min(_MAX_RETRY_AFTER_S, policy.max_backoff_ms / 1000):
            return None
        return max(err.retry_after, 0.0)
    return float(backoff)


def resolve_limit(value: int | str | None, params: Mapping[str, Any]) -> int | None:
    """A limit given as an int or a param name, resolved against the run's params."""
    if value is None or isinstance(value, int):
        return value
    resolved = params[value]
    return int(resolved)


def effective_params(
    defaults: Mapping[str, ParamValue], overrides: Mapping[str, Any] | None
) -> dict[str, ParamValue]:
    """Defaults merged with overrides, each override type-checked. Raises: ParamError."""
    merged = dict(defaults)
    problems = []
    for name, value in (overrides or {}).items():
        if name not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            problems.append(f"unknown param {name!r} (known: {known})")
            continue
        expected = type(defaults[name])
        ok = type(value) is expected or (expected is float and type(value) is int)
        if not ok:
            problems.append(
                f"param {name!r} must be {expected.__name__}, got {type(value).__name__} {value!r}"
            )
            continue
        merged[name] = value
    if problems:
        raise ParamError("; ".join(problems))
    return merged


def limits_of(
    limits: Limits, params: Mapping[str, Any]
) -> tuple[int | None, int | None, int | None]:
    """(max_steps, max_transitions, max_wall_ms) resolved against params."""
    return (
        resolve_limit(limits.max_steps, params),
        resolve_limit(limits.max_transitions, params),
        resolve_limit(limits.max_wall_ms, params),
    )
