"""The fixed parts of generated workflows: data types, handlers, guards, hooks, TOML writing.

See `workflow_strategies` (the public module) for how workflows are generated and driven.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import frozen

from loopwright.schemas import Custom

from ..context import Outcome
from ..registry import Registry, handler

SCRIPT = "script"
"""Service: `(state, declared_outcomes: tuple[str, ...]) -> outcome` chooses each outcome."""
GUARDS = "guards"
"""Service: `(guard_ref, ctx) -> bool` answers `call` guards (absent: always False)."""
TRACE = "trace"
"""Service: a list that generated hooks append `(hook_ref, state)` to (optional)."""

FLAG_GUARD = "gen.flag"
"""Registry name of the `call` guard every generated registry has."""
HOOKS = ("gen.trace", "gen.trace_more")
"""Registry names of the hooks every generated registry has."""


@frozen(kw_only=True)
class Loop:
    """A branch back to an earlier (or the same) state, where a cycle closes, and its bound."""

    state: str
    outcome: str
    index: int
    """Position of the back branch in the outcome's branch list."""
    guarded: int
    """Position of the branch whose counter guard bounds the loop: the back branch itself
    (turned off by its guard), or an earlier exit branch (turned on by its guard, it wins)."""


@frozen(kw_only=True)
class GeneratedWorkflow:
    """A valid workflow file as plain data, with the registry its references resolve in."""

    raw: dict[str, Any]
    """The file's content (JSON/TOML/YAML-compatible); copy it before changing it."""
    registry: Registry
    """Handlers `gen.<state>`, the guard `gen.flag` and the hooks in `HOOKS`."""
    outcomes: Mapping[str, tuple[str, ...]]
    """Declared outcomes of each non-final state."""
    order: tuple[str, ...]
    """Non-final states; fallbacks only go to later states or final states."""
    finals: tuple[str, ...]
    """Final states."""
    loops: tuple[Loop, ...]
    """The back branches (every cycle passes through one)."""


@frozen(kw_only=True)
class Mutation:
    """One thing broken in a valid workflow, and where validation must report it."""

    kind: str
    """What was broken (`retarget`, `drop_transition`, `unbounded_loop`, ...)."""
    raw: dict[str, Any]
    """The mutated file content."""
    location: str
    """A reported problem is located at or under this path, or names it (cycle problems)."""
    registry: Registry
    """The registry to validate with (the generated one)."""


MUTATION_KINDS = (
    "retarget", "drop_transition", "undeclared_outcome", "all_guarded", "unknown_guard",
    "unbounded_loop", "guard_without_bound", "bad_guard_shape", "final_transition",
    "unknown_param", "missing_param", "wrong_param_type", "break_initial", "orphan_state",
    "dead_end", "handler", "background_then_foreground", "bad_policy", "bad_limit",
    "unknown_reference", "shape",
)  # fmt: skip
"""Every kind of `Mutation` (see `_workflow_mutations` for what each breaks)."""


def reported(problems: Sequence[Any], location: str) -> bool:
    """Whether some problem is located at/under `location` or names it (as cycle problems do)."""
    return any(
        p.location == location
        or p.location.startswith((f"{location}.", f"{location}["))
        or _names(p.message, location)
        for p in problems
    )


def _names(message: str, location: str) -> bool:
    return any(
        word.rstrip(",;)").startswith(location)
        and word.rstrip(",;)")[len(location) : len(location) + 1] in ("", ".", "[")
        for word in message.replace("(", " ").split()
    )


def make_handler(
    outcomes: Sequence[str], *, params: Mapping[str, type] | None = None, streaming: bool = False
) -> Any:
    """A handler declaring `outcomes` that asks the `SCRIPT` service which one to return."""
    declared = tuple(outcomes)
    if streaming:

        @handler(outcomes=declared, params=params)
        async def stream(ctx: Any) -> Any:
            yield Custom("generated", ctx.state)
            yield Outcome(ctx.service(SCRIPT)(ctx.state, declared))

        return stream

    @handler(outcomes=declared, params=params)
    async def step(ctx: Any) -> Outcome:
        return Outcome(ctx.service(SCRIPT)(ctx.state, declared))

    return step


@handler(outcomes=["again"])
async def spin(ctx: Any) -> str:
    """A handler that only ever loops (`again`); mutations use it to build dead ends."""
    return "again"


def flag_guard(ctx: Any) -> bool:
    """The `call` guard of generated workflows: asks the `GUARDS` service (False without it)."""
    ask = ctx.services.get(GUARDS)
    return bool(ask(FLAG_GUARD, ctx)) if ask is not None else False


def trace_hook(ref: str) -> Any:
    """A hook appending `(ref, state)` to the `TRACE` service's list, when there is one."""

    def hook(ctx: Any) -> None:
        trace = ctx.services.get(TRACE)
        if trace is not None:
            trace.append((ref, ctx.state))

    return hook


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML text for plain workflow data (strings, ints, finite floats, bools, lists, tables)."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in data.items())


def _toml_key(key: str) -> str:
    return _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            repr(value)
            if math.isfinite(value)
            else {"inf": "inf", "-inf": "-inf"}.get(repr(value), "nan")
        )
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
