"""Single mutations of a generated valid workflow, each with where validation must complain.

Each `_m_*` function breaks one thing in a copy of the file and returns the mutation, or None
when the workflow has nothing it applies to. `mutation_of` tries them in a random order.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from hypothesis import reject
from hypothesis import strategies as st

from .._locate import join_path
from ._workflow_kit import FLAG_GUARD, MUTATION_KINDS, GeneratedWorkflow, Mutation

Raw = dict[str, Any]
_SPIN = "loopwright.engine.testing.workflow_strategies:spin"
# Generated names never contain `-`, so these cannot collide with a generated state.
_NOWHERE, _ORPHAN, _TRAP = "mutant-nowhere", "mutant-orphan", "mutant-trap"


def mutation_of(gen: GeneratedWorkflow, kinds: tuple[str, ...]) -> st.SearchStrategy[Mutation]:
    """A strategy for one mutation of `gen`: a drawn kind, or the next of `kinds` that applies."""

    @st.composite
    def draw_mutation(draw: st.DrawFn) -> Mutation:
        first = draw(st.integers(0, len(kinds) - 1))
        for name in kinds[first:] + kinds[:first]:
            raw = copy.deepcopy(gen.raw)
            location = _MUTATIONS[name](draw, gen, raw)
            if location is not None:
                return Mutation(kind=name, raw=raw, location=location, registry=gen.registry)
        reject()  # none of `kinds` applies to this workflow

    return draw_mutation()


# -- reading and writing branches in raw data ------------------------------------------------


def _branches(state: Raw, outcome: str) -> list[Raw]:
    value = state["next"] if outcome == "next" and "next" in state else state["on"][outcome]
    items = value if isinstance(value, list) else [value]
    return [{"to": b} if isinstance(b, str) else dict(b) for b in items]


def _set_branches(state: Raw, outcome: str, branches: list[Raw]) -> None:
    if outcome == "next" and "next" in state:
        state["next"] = branches
    else:
        state.setdefault("on", {})[outcome] = branches


def _outcomes(state: Raw) -> list[str]:
    return [*state.get("on", {}), *(["next"] if "next" in state else [])]


def _slots(raw: Raw) -> list[tuple[str, str]]:
    return [(n, o) for n, s in raw["states"].items() for o in _outcomes(s)]


def _where(*path: str | int) -> str:
    return join_path(path)


def _pick(draw: st.DrawFn, items: list[Any]) -> Any:
    return draw(st.sampled_from(items)) if items else None


# -- mutations ---------------------------------------------------------------------------------

Mutator = Callable[[st.DrawFn, GeneratedWorkflow, Raw], str | None]


def _m_retarget(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    name, outcome = draw(st.sampled_from(_slots(raw)))
    branches = _branches(raw["states"][name], outcome)
    branches[draw(st.integers(0, len(branches) - 1))]["to"] = _NOWHERE
    _set_branches(raw["states"][name], outcome, branches)
    return _where("states", name, "on", outcome)


def _m_drop_transition(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    name, outcome = draw(st.sampled_from(_slots(raw)))
    state = raw["states"][name]
    if outcome == "next" and "next" in state:
        del state["next"]
    else:
        del state["on"][outcome]
    return _where("states", name, "on", outcome)


def _m_undeclared_outcome(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    name = draw(st.sampled_from(gen.order))
    raw["states"][name].setdefault("on", {})["never_declared"] = gen.finals[0]
    return _where("states", name, "on", "never_declared")


def _m_all_guarded(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    name, outcome = draw(st.sampled_from(_slots(raw)))
    branches = _branches(raw["states"][name], outcome)
    branches[-1]["unless"] = "mutant_flag"
    raw.setdefault("guards", {})["mutant_flag"] = {"call": FLAG_GUARD}
    _set_branches(raw["states"][name], outcome, branches)
    return _where("states", name, "on", outcome)


def _m_unknown_guard(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    name, outcome = draw(st.sampled_from(_slots(raw)))
    branches = _branches(raw["states"][name], outcome)
    branch = branches[draw(st.integers(0, len(branches) - 1))]
    key = (
        "if"
        if "if" in branch
        else "unless"
        if "unless" in branch
        else draw(st.sampled_from(["if", "unless"]))
    )
    branch[key] = f"{branch.get(key, 'guard')}_typo"
    _set_branches(raw["states"][name], outcome, branches)
    return _where("states", name, "on", outcome)


def _m_unbounded_loop(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    loop = _pick(draw, list(gen.loops))
    if loop is None:
        return None
    state = raw["states"][loop.state]
    branches = _branches(state, loop.outcome)
    branch = branches[loop.guarded]
    key = "if" if "if" in branch else "unless"
    how = draw(st.sampled_from(["flip", "other_counter", "unguard"]))
    if how == "flip":  # `if` <-> `unless`: the bound now works the wrong way round
        branch[{"if": "unless", "unless": "if"}[key]] = branch.pop(key)
    elif how == "other_counter":  # a counter that never grows along the loop
        bound = raw["guards"][branch[key]]
        raw["guards"]["mutant_counter"] = {
            "counter": f"visits.{gen.finals[0]}",
            **{k: 1 for k in ("at_least", "below") if k in bound},
        }
        branch[key] = "mutant_counter"
    elif loop.guarded == loop.index:  # the back branch becomes the unguarded fallback
        del branch[key]
        del branches[loop.index + 1 :]
    else:  # the exit branch goes
        del branches[loop.guarded]
    _set_branches(state, loop.outcome, branches)
    return _where("states", loop.state, "on", loop.outcome)


def _m_guard_without_bound(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    counters = [g for g, d in raw.get("guards", {}).items() if "counter" in d]
    name = _pick(draw, counters)
    if name is None:
        return None
    raw["guards"][name] = {"counter": raw["guards"][name]["counter"]}
    return _where("guards", name)


def _m_bad_guard_shape(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    name = _pick(draw, sorted(raw.get("guards", {})))
    if name is None:
        return None
    how = draw(st.sampled_from(["both", "neither", "counter_name"]))
    if how == "both":
        raw["guards"][name] = {"counter": "steps", "at_least": 1, "call": FLAG_GUARD}
    elif how == "neither":
        raw["guards"][name] = {}
    else:
        counter = draw(st.sampled_from(["attempts", "visits.nowhere", "visits", "step"]))
        raw["guards"][name] = {"counter": counter, "at_least": 1}
        return _where("guards", name, "counter")
    return _where("guards", name)


def _m_final_transition(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    final = draw(st.sampled_from(gen.finals))
    if draw(st.booleans()):
        raw["states"][final]["handler"] = f"gen.{gen.order[0]}"
        return _where("states", final, "handler")
    raw["states"][final]["on"] = {"next": gen.order[0]}
    return _where("states", final, "on")


def _m_unknown_param(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    refs: list[tuple[tuple[str, ...], Raw]] = [
        (("guards", g, key), d)
        for g, d in raw.get("guards", {}).items()
        for key in ("at_least", "below")
        if isinstance(d.get(key), str)
    ]
    refs += [
        (("limits", k), raw["limits"])
        for k in raw.get("limits", {})
        if isinstance(raw["limits"][k], str)
    ]
    picked = _pick(draw, refs)
    if picked is None:
        return None
    path, table = picked
    table[path[-1]] = f"{table[path[-1]]}_typo"
    return _where(*path)


def _m_missing_param(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    read = sorted({p for s in gen.order for p in gen.registry.resolve_handler(f"gen.{s}").params})
    param = _pick(draw, read)
    if param is None:
        return None
    del raw["params"][param]
    return _where("params", param)


def _m_wrong_param_type(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    read = {p for s in gen.order for p in gen.registry.resolve_handler(f"gen.{s}").params}
    bounds = {
        v
        for g in raw.get("guards", {}).values()
        for k, v in g.items()
        if k in ("at_least", "below") and isinstance(v, str)
    }
    bounds |= {v for v in raw.get("limits", {}).values() if isinstance(v, str)}
    param = _pick(draw, sorted(read | bounds))
    if param is None:
        return None
    value = raw["params"][param]
    raw["params"][param] = {bool: 1, int: "7", float: "1.5", str: 2}[type(value)]
    if type(value) is int and draw(st.booleans()):
        raw["params"][param] = draw(st.sampled_from([True, 2.5]))
    return _where("params", param)


def _m_break_initial(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    how = draw(st.sampled_from(["unknown", "empty", "missing", "wrong_type"]))
    if how == "missing":
        del raw["initial"]
    else:
        raw["initial"] = {"unknown": _NOWHERE, "empty": "", "wrong_type": 1}[how]
    return "initial"


def _m_orphan_state(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    donor = draw(st.sampled_from(gen.order))
    on = {o: gen.finals[0] for o in gen.outcomes[donor]}
    raw["states"][_ORPHAN] = {"handler": f"gen.{donor}", "on": on}
    return _where("states", _ORPHAN)


def _m_dead_end(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    name, outcome = draw(st.sampled_from(_slots(raw)))
    if raw["states"][name].get("background"):
        return None  # the trap would also be a foreground state after a background one
    branches = _branches(raw["states"][name], outcome)
    branches[-1]["to"] = _TRAP
    _set_branches(raw["states"][name], outcome, branches)
    raw["states"][_TRAP] = {"handler": _SPIN, "on": {"again": _TRAP}}
    return _where("states", _TRAP)


def _m_handler(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    name = draw(st.sampled_from(gen.order))
    how = draw(st.sampled_from(["missing", "unregistered", "bad_module", "not_declared"]))
    if how == "missing":
        del raw["states"][name]["handler"]
    else:
        raw["states"][name]["handler"] = {
            "unregistered": "gen.no_such_handler",
            "bad_module": "loopwright_no_such_module:handler",
            "not_declared": "loopwright.engine.testing.workflow_strategies:flag_guard",
        }[how]
    return _where("states", name, "handler")


def _m_background_then_foreground(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    states = raw["states"]
    foreground = [s for s in gen.order if not states[s].get("background")]
    sources = [
        s
        for s in foreground
        if any(
            b["to"] in foreground and b["to"] != s
            for o in _outcomes(states[s])
            for b in _branches(states[s], o)
        )
    ]
    name = _pick(draw, sources)
    if name is None:
        return None
    states[name]["background"] = True
    return _where("states", name)


def _m_bad_policy(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    name = draw(st.sampled_from(gen.order))
    state = raw["states"][name]
    key = draw(st.sampled_from(["attempts", "backoff_ms", "max_backoff_ms", "timeout_ms"]))
    if key == "timeout_ms":
        state["timeout_ms"] = draw(st.integers(-5, 0))
        return _where("states", name, "timeout_ms")
    bad = draw(st.integers(-5, 0)) if key == "attempts" else draw(st.integers(-5, -1))
    state.setdefault("retry", {})[key] = bad
    return _where("states", name, "retry", key)


def _m_bad_limit(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    key = draw(st.sampled_from(["max_steps", "max_transitions", "max_wall_ms"]))
    raw.setdefault("limits", {})[key] = draw(st.integers(-3, 0))
    return _where("limits", key)


def _m_unknown_reference(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    if draw(st.booleans()):
        raw["data"] = "gen.no_such_data_type"
        return "data"
    name = draw(st.sampled_from(gen.order))
    kind = draw(st.sampled_from(["on_enter", "on_exit", "before", "after"]))
    raw["states"][name]["hooks"] = {kind: ["gen.no_such_hook"]}
    return _where("states", name, "hooks", kind)


def _m_shape(draw: st.DrawFn, gen: GeneratedWorkflow, raw: Raw) -> str | None:
    name = draw(st.sampled_from(gen.order))
    how = draw(st.sampled_from(["unknown_key", "wrong_type", "bad_branch", "top_level"]))
    if how == "unknown_key":
        raw["states"][name]["retires"] = 3
        return _where("states", name, "retires")
    if how == "wrong_type":
        key = draw(st.sampled_from(["step", "background", "timeout_ms", "description"]))
        raw["states"][name][key] = {
            "step": "yes",
            "background": 1,
            "timeout_ms": "5s",
            "description": 3,
        }[key]
        return _where("states", name, key)
    if how == "bad_branch":
        raw["states"][name].setdefault("on", {})["broken"] = {"to": gen.finals[0], "when": "x"}
        return _where("states", name, "on", "broken")
    raw["durability"] = "sometimes"
    return "durability"


_MUTATIONS: dict[str, Mutator] = {
    "retarget": _m_retarget,
    "drop_transition": _m_drop_transition,
    "undeclared_outcome": _m_undeclared_outcome,
    "all_guarded": _m_all_guarded,
    "unknown_guard": _m_unknown_guard,
    "unbounded_loop": _m_unbounded_loop,
    "guard_without_bound": _m_guard_without_bound,
    "bad_guard_shape": _m_bad_guard_shape,
    "final_transition": _m_final_transition,
    "unknown_param": _m_unknown_param,
    "missing_param": _m_missing_param,
    "wrong_param_type": _m_wrong_param_type,
    "break_initial": _m_break_initial,
    "orphan_state": _m_orphan_state,
    "dead_end": _m_dead_end,
    "handler": _m_handler,
    "background_then_foreground": _m_background_then_foreground,
    "bad_policy": _m_bad_policy,
    "bad_limit": _m_bad_limit,
    "unknown_reference": _m_unknown_reference,
    "shape": _m_shape,
}

assert set(_MUTATIONS) == set(MUTATION_KINDS), "keep MUTATION_KINDS in step with _MUTATIONS"
