"""The run record: everything needed to resume a run from its last checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from attrs import field, frozen

RunStatus = Literal["running", "background", "finished", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"finished", "failed", "cancelled"})


@frozen(kw_only=True)
class ErrorInfo:
    """Why a run or step failed."""

    code: str
    """Stable taxonomy code (`rate_limited`, `timeout`, `undeclared_outcome`, ...)."""
    message: str
    """Human-readable explanation, including how to fix it when known."""
    retryable: bool = False
    """Whether the same request may succeed if tried again later."""


@frozen(kw_only=True)
class RunRecord:
    """A checkpoint of one run: state, counters and data, written after every state."""

    id: str
    """Run id."""
    workflow: str
    """Workflow name."""
    state: str
    """The state to execute next (or the final state once finished)."""
    status: RunStatus = "running"
    """`running` until the foreground ends, `background` while background states remain."""
    seq: int = 0
    """Number of states completed; compare-and-advance uses it."""
    epoch: int = 0
    """Lease epoch of the writer; a write with an older epoch is refused (fencing)."""
    counters: Mapping[str, int] = field(factory=dict)
    """`steps`, `transitions` and `visits.<state>`."""
    data: Any = None
    """The run's data, unstructured (JSON-compatible)."""
    inputs: Any = None
    """The inputs the run was started with."""
    params: Mapping[str, bool | int | float | str] = field(factory=dict)
    """Effective params (defaults merged with overrides)."""
    visited: tuple[str, ...] = ()
    """States entered so far, in order."""
    stop_reason: str | None = None
    """Why the run ended (`final`, `cancelled`, `max_steps`, ...)."""
    error: ErrorInfo | None = None
    """Set when the run failed."""
    key: str | None = None
    """Grouping key chosen by the caller (e.g. the agent id)."""
    created_at: float = 0.0
    """Clock time at start."""
    updated_at: float = 0.0
    """Clock time of the last checkpoint."""
    started_at: float = 0.0
    """Clock time the foreground started (wall-clock cap)."""
