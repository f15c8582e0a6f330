"""Workflow definition: the frozen shape a workflow file is structured into."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from attrs import field, frozen

ParamValue = bool | int | float | str
Durability = Literal["sync", "async", "exit"]


@frozen(kw_only=True)
class Branch:
    """One possible target of an outcome; the first branch whose guards pass is taken."""

    to: str
    """Name of the target state."""
    if_: str | None = None
    """Guard that must be true (written `if` in files)."""
    unless: str | None = None
    """Guard that must be false."""


@frozen(kw_only=True)
class RetryPolicy:
    """How the runner re-runs a state whose handler raised a retryable step error."""

    on: tuple[str, ...] = ()
    """Error codes that are retried (e.g. `rate_limited`, `timeout`)."""
    attempts: int = 3
    """Total attempts, the first one included."""
    backoff_ms: int = 200
    """First delay; doubled per attempt, capped by `max_backoff_ms`."""
    max_backoff_ms: int = 5000
    """Upper bound of one delay, `Retry-After` included."""
    before_output_only: bool = True
    """Do not retry once the handler has streamed an event to the consumer."""


@frozen(kw_only=True)
class Hooks:
    """User callbacks (`(ctx) -> None`, synchronous and cheap) run by the machine."""

    on_enter: tuple[str, ...] = ()
    """Run after the machine entered this state."""
    on_exit: tuple[str, ...] = ()
    """Run when the machine leaves this state."""
    before: tuple[str, ...] = ()
    """Run before any transition out of this state."""
    after: tuple[str, ...] = ()
    """Run after any transition out of this state."""


@frozen(kw_only=True)
class StateDef:
    """One state of a workflow."""

    handler: str | None = None
    """Registry name or `package.module:function`; required unless `final`."""
    on: Mapping[str, tuple[Branch, ...]] = field(factory=dict)
    """Outcome name to its branches (`next = X` in a file is `on.next = X`)."""
    retry: RetryPolicy | None = None
    """Retry policy for step errors raised by the handler."""
    timeout_ms: int | None = None
    """Per-attempt time limit; exceeding it raises a `timeout` step error."""
    background: bool = False
    """Runs after the consumer has its terminal event (recorded as pending work first)."""
    final: bool = False
    """A final state ends the run; it has no handler and no transitions."""
    step: bool = False
    """Entering this state counts one step (see `limits.max_steps`)."""
    checkpoint: bool = True
    """Write a checkpoint after this state; `false` for pure states that are cheap to
    replay (the next checkpoint covers them; a crash re-runs them)."""
    stop_reason: str | None = None
    """For a final state: the stop reason of runs ending here (default `final`)."""
    hooks: Hooks = field(factory=Hooks)
    """User hooks attached to this state."""
    description: str = ""
    """Free text shown in diagrams and errors."""


@frozen(kw_only=True)
class GuardDef:
    """A named condition: a counter compared with a bound, or a call to user code."""

    counter: str | None = None
    """`steps`, `transitions` or `visits.<state>`."""
    at_least: int | str | None = None
    """True when the counter is >= this (an integer or a param name)."""
    below: int | str | None = None
    """True when the counter is < this (an integer or a param name)."""
    call: str | None = None
    """Registry name or `package.module:function` of a `(ctx) -> bool` predicate."""


@frozen(kw_only=True)
class Limits:
    """Caps that end a run with their own stop reason; values may name a param."""

    max_steps: int | str | None = None
    """Entries into `step = true` states; stop reason `max_steps`."""
    max_transitions: int | str = 1000
    """Transitions taken; stop reason `max_transitions`."""
    max_wall_ms: int | str | None = None
    """Wall-clock time of the foreground run; stop reason `max_wall_time`."""


@frozen(kw_only=True)
class Workflow:
    """A validated-shape workflow (semantic checks live in `loopwright.engine`)."""

    name: str
    """Workflow name, used in run records."""
    initial: str
    """The state a run starts in."""
    states: Mapping[str, StateDef]
    """All states by name."""
    description: str = ""
    """Free text."""
    params: Mapping[str, ParamValue] = field(factory=dict)
    """Parameter defaults; their types are the types of the defaults."""
    guards: Mapping[str, GuardDef] = field(factory=dict)
    """Named guards used by branches."""
    limits: Limits = field(factory=Limits)
    """Run caps."""
    durability: Durability = "sync"
    """When checkpoints are written: `sync`, `async` or `exit`."""
    data: str | None = None
    """Registry name or `module:Class` of the run's data type (default: a JSON dict)."""
