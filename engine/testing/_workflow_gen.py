"""Generation of valid workflows (see `workflow_strategies` for how they are built)."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

from attrs import frozen
from hypothesis import strategies as st

from ..registry import Registry
from ._workflow_kit import (
    FLAG_GUARD,
    HOOKS,
    GeneratedWorkflow,
    Loop,
    flag_guard,
    make_handler,
    trace_hook,
)

OUTCOMES = ("next", "ok", "retry", "failed", "tool_calls", "reply", "continue", "more")
_COUNTER_CHOICES = ("transitions", "visits_target", "visits_source", "steps")
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_NAME = st.builds(
    operator.add, st.sampled_from(_LOWER), st.text(_LOWER + "0123456789_", max_size=7)
)
_PARAMS = st.dictionaries(
    st.builds("p_".__add__, st.text(_LOWER, min_size=1, max_size=5)),
    st.booleans()
    | st.integers(-5, 100)
    | st.floats(-1e6, 1e6, allow_nan=False)
    | st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8),
    max_size=3,
)


@frozen(kw_only=True)
class _Slot:
    state: int
    outcome: str
    branches: list[dict[str, Any]]


@st.composite
def valid_workflows(draw: st.DrawFn, *, max_states: int = 6) -> GeneratedWorkflow:
    """Random workflows that validate, with a registry of matching handlers."""
    n = draw(st.integers(1, max_states), label="non-final states")
    n_finals = draw(st.integers(1, 2), label="final states")
    names = draw(st.lists(_NAME, min_size=n + n_finals, max_size=n + n_finals, unique=True))
    order, finals = names[:n], names[n:]
    n_background = draw(st.integers(0, min(2, n - 1)), label="background states")
    background = set(order[n - n_background :])
    steps = {s for s in order if draw(st.booleans())}
    outcomes = {
        s: tuple(draw(st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=3, unique=True)))
        for s in order
    }
    slots = [
        _Slot(state=i, outcome=o, branches=[]) for i, s in enumerate(order) for o in outcomes[s]
    ]
    guards = _Guards()
    params = dict(draw(_PARAMS))
    _connect(draw, order, finals, slots, guards)
    _forward_extras(draw, order, finals, slots, guards, params)
    loops = _loops(draw, order, background, steps, slots, guards, params)
    registry = _registry(draw, order, outcomes, params)
    raw = _render(draw, order, finals, background, steps, slots, guards, params)
    return GeneratedWorkflow(
        raw=raw,
        registry=registry,
        outcomes=outcomes,
        order=tuple(order),
        finals=tuple(finals),
        loops=tuple(loops),
    )


class _Guards:
    """Guard definitions by content, so equal guards share a name."""

    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}

    def name_for(self, definition: dict[str, Any]) -> str:
        for name, existing in self.defs.items():
            if existing == definition:
                return name
        name = f"g{len(self.defs)}"
        self.defs[name] = definition
        return name


def _connect(
    draw: st.DrawFn, order: list[str], finals: list[str], slots: list[_Slot], guards: _Guards
) -> None:
    """Unguarded fallbacks forward, making every state and final state reachable."""
    free = list(slots)
    for i, target in [*enumerate(order), *((len(order), f) for f in finals)]:
        if i == 0:
            continue
        earlier = [s for s in free if s.state < i]
        if earlier:
            slot = draw(st.sampled_from(earlier))
            free.remove(slot)
            slot.branches.append({"to": target})
        else:
            slot = draw(st.sampled_from([s for s in slots if s.state < i]))
            slot.branches.insert(0, {"to": target, "if": guards.name_for({"call": FLAG_GUARD})})
    for slot in free:
        forward = [*order[slot.state + 1 :], *finals]
        slot.branches.append({"to": draw(st.sampled_from(forward))})


def _forward_extras(
    draw: st.DrawFn,
    order: list[str],
    finals: list[str],
    slots: list[_Slot],
    guards: _Guards,
    params: dict[str, Any],
) -> None:
    """Guarded forward branches under `call` guards or counter guards that only turn off.

    One that a counter turned on for good would win over the branches after it, and so bound
    the loops through them.
    """
    for slot in slots:
        if not draw(st.booleans()):
            continue
        target = draw(st.sampled_from([*order[slot.state + 1 :], *finals]))
        kind = draw(st.sampled_from(["call", "if_below", "unless_at_least"]))
        if kind == "call":
            branch = {"to": target, "unless": guards.name_for({"call": FLAG_GUARD})}
        else:
            bound_key, ref_key = ("below", "if") if kind == "if_below" else ("at_least", "unless")
            counter = draw(st.sampled_from(["steps", "transitions", f"visits.{order[slot.state]}"]))
            bound = _bound(draw, params)
            branch = {
                "to": target,
                ref_key: guards.name_for({"counter": counter, bound_key: bound}),
            }
        slot.branches.insert(0, branch)


def _bound(draw: st.DrawFn, params: dict[str, Any]) -> int | str:
    """A counter bound or a limit: an integer, or a new int param holding it."""
    if draw(st.booleans()):
        return draw(st.integers(1, 6))
    name = f"p_max{len(params)}"  # `_PARAMS` names have no digits: no clash
    params[name] = draw(st.integers(1, 6))
    return name


def _forward_reach(order: list[str], slots: list[_Slot], guards: _Guards) -> dict[int, set[int]]:
    """For each state, the states (by index) it reaches through branches no counter guards.

    Loops only close over such paths: a counter-guarded branch on the way could bound the loop
    by itself, and then breaking the loop's own bound would not make it unbounded.
    """
    index = {name: i for i, name in enumerate(order)}
    succ: dict[int, set[int]] = {i: set() for i in range(len(order))}
    for slot in slots:
        succ[slot.state] |= {
            index[b["to"]] for b in slot.branches if b["to"] in index and _free(b, guards)
        }
    reach: dict[int, set[int]] = {}
    for i in reversed(range(len(order))):
        reach[i] = {i}.union(*(reach[j] for j in succ[i] if j > i))
    return reach


def _free(branch: dict[str, Any], guards: _Guards) -> bool:
    refs = [branch[k] for k in ("if", "unless") if k in branch]
    return all("call" in guards.defs[ref] for ref in refs)


def _loops(
    draw: st.DrawFn,
    order: list[str],
    background: set[str],
    steps: set[str],
    slots: list[_Slot],
    guards: _Guards,
    params: dict[str, Any],
) -> list[Loop]:
    reach = _forward_reach(order, slots, guards)
    loops: list[Loop] = []
    for slot in slots:
        source = order[slot.state]
        targets = [
            j
            for j in range(slot.state + 1)
            if slot.state in reach[j] and (order[j] in background) == (source in background)
        ]
        if not targets or draw(st.integers(0, 2)) != 0:
            continue
        target = order[draw(st.sampled_from(targets))]
        choices = [c for c in _COUNTER_CHOICES if c != "steps" or target in steps]
        counter = {
            "transitions": "transitions",
            "visits_target": f"visits.{target}",
            "visits_source": f"visits.{source}",
            "steps": "steps",
        }[draw(st.sampled_from(choices))]
        bound = _bound(draw, params)
        if draw(st.booleans()):  # the back branch is turned off by its own guard
            bound_key, ref_key = draw(st.sampled_from([("at_least", "unless"), ("below", "if")]))
            name = guards.name_for({"counter": counter, bound_key: bound})
            slot.branches.insert(0, {"to": target, ref_key: name})
            loops.append(Loop(state=source, outcome=slot.outcome, index=0, guarded=0))
        else:  # the exit (the old fallback) wins once its guard turns on
            bound_key, ref_key = draw(st.sampled_from([("at_least", "if"), ("below", "unless")]))
            name = guards.name_for({"counter": counter, bound_key: bound})
            slot.branches[-1][ref_key] = name
            slot.branches.append({"to": target})
            last = len(slot.branches) - 1
            loops.append(Loop(state=source, outcome=slot.outcome, index=last, guarded=last - 1))
    return loops


def _registry(
    draw: st.DrawFn,
    order: list[str],
    outcomes: Mapping[str, tuple[str, ...]],
    params: dict[str, Any],
) -> Registry:
    registry = Registry()
    for state in order:
        declared = draw(st.lists(st.sampled_from(sorted(params)), unique=True)) if params else []
        registry.add_handler(
            f"gen.{state}",
            make_handler(
                outcomes[state],
                params={p: type(params[p]) for p in declared},
                streaming=draw(st.booleans()),
            ),
        )
    registry.add_guard(FLAG_GUARD, flag_guard)
    for ref in HOOKS:
        registry.add_hook(ref, trace_hook(ref))
    return registry


def _render(
    draw: st.DrawFn,
    order: list[str],
    finals: list[str],
    background: set[str],
    steps: set[str],
    slots: list[_Slot],
    guards: _Guards,
    params: dict[str, Any],
) -> dict[str, Any]:
    states: dict[str, Any] = {}
    for i, name in enumerate(order):
        state: dict[str, Any] = {"handler": f"gen.{name}"}
        if name in steps or draw(st.booleans()):
            state["step"] = name in steps
        if name in background:
            state["background"] = True
        if draw(st.booleans()):
            state["checkpoint"] = draw(st.booleans())
        state.update(_policies(draw))
        for slot in (s for s in slots if s.state == i):
            _render_outcome(draw, state, slot)
        states[name] = state
    for name in finals:
        states[name] = {"final": True}
        if draw(st.booleans()):
            states[name]["stop_reason"] = draw(st.sampled_from(["final", "max_steps", "done"]))
    permuted = draw(st.permutations(list(states)))
    raw: dict[str, Any] = {
        "name": draw(_NAME),
        "initial": order[0],
        "states": {name: states[name] for name in permuted},
    }
    top = _top_level(draw, params)  # may add params (limits naming one)
    if params:
        raw["params"] = params
    if guards.defs:
        raw["guards"] = guards.defs
    raw.update(top)
    return raw


def _render_outcome(draw: st.DrawFn, state: dict[str, Any], slot: _Slot) -> None:
    branches = slot.branches
    value: Any = [dict(b) for b in branches]
    if len(branches) == 1:
        to = branches[0]["to"]
        value = draw(st.sampled_from([to, {"to": to}, [to], [{"to": to}]]))
    elif draw(st.booleans()):
        value[-1] = value[-1]["to"]  # an unguarded branch may be written as a bare name
    if slot.outcome == "next" and draw(st.booleans()):
        state["next"] = value
    else:
        state.setdefault("on", {})[slot.outcome] = value


def _policies(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["retry"] = {
            "on": draw(
                st.lists(st.sampled_from(["timeout", "rate_limited", "server_error"]), unique=True)
            ),
            "attempts": draw(st.integers(1, 4)),
            "backoff_ms": draw(st.integers(0, 50)),
            "before_output_only": draw(st.booleans()),
        }
    if draw(st.booleans()):
        out["timeout_ms"] = draw(st.integers(1, 60_000))
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["on_enter", "on_exit", "before", "after"]))
        out["hooks"] = {kind: draw(st.lists(st.sampled_from(HOOKS), min_size=1, max_size=2))}
    if draw(st.booleans()):
        out["description"] = draw(st.text(max_size=12))
    return out


def _top_level(draw: st.DrawFn, params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if draw(st.booleans()):
        limits["max_steps"] = _bound(draw, params)
    if draw(st.booleans()):
        limits["max_transitions"] = draw(st.integers(1, 1000))
    if draw(st.booleans()):
        limits["max_wall_ms"] = draw(st.integers(1, 10**6))
    if limits:
        out["limits"] = limits
    if draw(st.booleans()):
        out["durability"] = draw(st.sampled_from(["sync", "async", "exit"]))
    if draw(st.booleans()):
        out["description"] = draw(st.text(max_size=20))
    return out
