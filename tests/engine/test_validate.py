"""Static validation: one test per kind of problem, the compiled output, and properties."""

from __future__ import annotations

import copy
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopwright.engine import Registry, RunContext, WorkflowError, handler
from loopwright.engine.loader import structure_workflow
from loopwright.engine.testing.memory import ManualClock, SequentialIds
from loopwright.engine.testing.workflow_strategies import (
    MUTATION_KINDS,
    GeneratedWorkflow,
    Mutation,
    mutations,
    reported,
    valid_workflows,
)
from loopwright.engine.validate import CounterGuard, load_and_validate, validate


@handler(outcomes=["again", "next"])
async def looping(ctx: Any) -> str:
    return "next"


@handler(outcomes=["next"], params={"limit": int})
async def forward(ctx: Any) -> str:
    return "next"


@handler(outcomes=[])
async def silent(ctx: Any) -> str:
    return "next"


async def undeclared(ctx: Any) -> str:
    return "next"


class TurnData:
    pass


def registry() -> Registry:
    reg = Registry()
    reg.add_handler("h.loop", looping)
    reg.add_handler("h.forward", forward)
    reg.add_handler("h.silent", silent)
    reg.add_guard("g.flag", lambda ctx: True)
    reg.add_hook("k.mark", lambda ctx: None)
    reg.add_data_type("d.turn", TurnData)
    return reg


BASE: dict[str, Any] = {
    "name": "t",
    "initial": "a",
    "params": {"limit": 3},
    "guards": {"enough": {"counter": "visits.a", "at_least": "limit"}},
    "states": {
        "a": {
            "handler": "h.loop",
            "on": {"again": [{"to": "done", "if": "enough"}, {"to": "a"}], "next": "b"},
        },
        "b": {"handler": "h.forward", "next": "done"},
        "done": {"final": True},
    },
}


def base(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    raw.update(changes)
    return raw


def problems_of(raw: dict[str, Any], reg: Registry | None = None) -> list[str]:
    with pytest.raises(WorkflowError) as caught:
        validate(structure_workflow(raw), reg or registry())
    return [str(p) for p in caught.value.problems]


def assert_problem(raw: dict[str, Any], location: str, *fragments: str) -> None:
    found = problems_of(raw)
    matching = [p for p in found if p.startswith(f"{location}: ")]
    assert matching, f"no problem at {location}: {found}"
    assert any(all(f in p for f in fragments) for p in matching), found


def test_the_base_workflow_is_valid() -> None:
    compiled = validate(structure_workflow(base()), registry(), source="base.toml")
    assert set(compiled.handlers) == {"a", "b"}
    assert compiled.handlers["a"].fn is looping
    assert set(compiled.guards) == {"enough"}
    assert compiled.params == {"limit": 3}
    assert compiled.source == "base.toml"
    assert compiled.data_type is None


# -- references ------------------------------------------------------------------------------


def test_unknown_target_state_is_located_at_the_outcome() -> None:
    raw = base()
    raw["states"]["stream"] = raw["states"].pop("b")
    raw["states"]["stream"]["next"] = "exec_tools"
    raw["states"]["a"]["on"]["next"] = "stream"
    assert 'states.stream.on.next: unknown state "exec_tools"' in problems_of(raw)


def test_unknown_target_in_a_branch_list_names_the_branch_and_suggests() -> None:
    raw = base()
    raw["states"]["a"]["on"]["again"][0]["to"] = "dome"
    assert_problem(raw, "states.a.on.again[0]", 'unknown state "dome"', 'did you mean "done"')


@pytest.mark.parametrize("initial", ["", "nowhere"])
def test_missing_or_unknown_initial_state(initial: str) -> None:
    assert_problem(base(initial=initial), "initial", "missing" if not initial else "nowhere")


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("h.nope", "neither a registered name"),
        ("no_such_module_xyz:fn", "cannot import"),
        ("tests.engine.test_validate:undeclared", "does not declare its outcomes"),
    ],
)
def test_handler_that_does_not_resolve(ref: str, fragment: str) -> None:
    raw = base()
    raw["states"]["b"]["handler"] = ref
    assert_problem(raw, "states.b.handler", fragment)


def test_a_handler_module_that_raises_on_import_is_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "boom_on_import.py").write_text("raise RuntimeError('kaboom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "boom_on_import", raising=False)
    raw = base()
    raw["states"]["b"]["handler"] = "boom_on_import:handler"
    assert_problem(raw, "states.b.handler", "RuntimeError", "kaboom")


def test_a_state_that_is_not_final_needs_a_handler() -> None:
    raw = base()
    del raw["states"]["b"]["handler"]
    assert_problem(raw, "states.b.handler", "missing")


def test_unknown_guard_hook_and_data_type() -> None:
    raw = base(data="d.nothing")
    raw["states"]["a"]["on"]["again"][0]["if"] = "enuogh"
    raw["states"]["b"]["hooks"] = {"before": ["k.mark", "k.nope"]}
    found = problems_of(raw)
    assert any(p.startswith('states.a.on.again[0].if: unknown guard "enuogh"') for p in found)
    assert 'did you mean "enough"' in " ".join(found)
    assert any(p.startswith("states.b.hooks.before[1]: ") for p in found)
    assert any(p.startswith("data: ") for p in found)


def test_hooks_guards_and_data_type_resolve_into_the_compiled_workflow() -> None:
    raw = base(data="d.turn")
    raw["guards"]["flag"] = {"call": "g.flag"}
    raw["states"]["a"]["on"]["next"] = [{"to": "b", "unless": "flag"}, {"to": "b"}]
    raw["states"]["b"]["hooks"] = {"on_enter": ["k.mark"], "after": ["k.mark"]}
    compiled = validate(structure_workflow(raw), registry())
    assert compiled.data_type is TurnData
    assert set(compiled.hooks) == {"k.mark"}
    assert compiled.guards["flag"](None) is True


# -- outcomes and branches ------------------------------------------------------------------


def test_declared_outcome_without_a_transition() -> None:
    raw = base()
    del raw["states"]["a"]["on"]["next"]
    assert_problem(raw, "states.a.on.next", 'may return "next"', "no transition")


def test_transition_on_an_outcome_the_handler_never_declares() -> None:
    raw = base()
    raw["states"]["b"]["on"] = {"nxet": "done"}
    assert_problem(raw, "states.b.on.nxet", 'never returns "nxet"', 'did you mean "next"')


def test_an_outcome_whose_branches_are_all_guarded_could_get_stuck() -> None:
    raw = base()
    raw["states"]["a"]["on"]["again"] = {"to": "done", "if": "enough"}
    assert_problem(raw, "states.a.on.again", "add an unguarded last branch")


def test_a_branch_after_an_unguarded_branch_is_never_taken() -> None:
    raw = base()
    raw["states"]["a"]["on"]["next"] = ["b", {"to": "done", "if": "enough"}, "done"]
    found = problems_of(raw)
    assert any(p.startswith("states.a.on.next[1]: never taken: branch 0") for p in found)
    assert any(p.startswith("states.a.on.next[2]: never taken: branch 0") for p in found)


# -- graph -----------------------------------------------------------------------------------


def test_unreachable_state() -> None:
    raw = base()
    raw["states"]["c"] = {"handler": "h.forward", "next": "done"}
    assert_problem(raw, "states.c", "unreachable")


def test_state_from_which_no_final_state_is_reachable() -> None:
    raw = base()
    raw["states"]["b"] = {"handler": "h.silent"}
    assert_problem(raw, "states.b", "no final state is reachable")


def test_a_workflow_without_final_state() -> None:
    raw = base()
    del raw["states"]["done"]
    raw["states"]["b"] = {"handler": "h.silent"}
    raw["states"]["a"]["on"]["again"] = [{"to": "a", "unless": "enough"}, {"to": "b"}]
    assert "states: no final state; add one with `final = true`" in problems_of(raw)


def test_final_state_with_transitions_or_handler() -> None:
    raw = base()
    raw["states"]["done"] = {"final": True, "handler": "h.forward", "on": {"next": "a"}}
    found = problems_of(raw)
    assert any(p.startswith("states.done.handler: a final state has no handler") for p in found)
    assert any(p.startswith("states.done.on.next: a final state has no transitions") for p in found)


def test_stop_reason_only_on_final_states() -> None:
    raw = base()
    raw["states"]["b"]["stop_reason"] = "max_steps"
    assert_problem(raw, "states.b.stop_reason", "only a final state")


def test_background_state_followed_by_a_foreground_state() -> None:
    raw = base()
    raw["states"]["a"]["background"] = True
    found = problems_of(raw)
    assert any(
        p.startswith('states.a.on.next: background state "a" continues to the foreground state "b"')
        for p in found
    )


def test_background_state_followed_by_background_or_final_is_fine() -> None:
    raw = base()
    raw["states"]["b"]["background"] = True
    validate(structure_workflow(raw), registry())


# -- cycles ----------------------------------------------------------------------------------


def _loop(branches: Any, *, guards: dict[str, Any] | None = None, step: bool = False) -> Any:
    """a --again--> branches, a --next--> b --next--> done (b is a step state when `step`)."""
    raw = base()
    raw["guards"] = guards or {}
    raw["states"]["a"]["on"]["again"] = branches
    raw["states"]["b"]["step"] = step
    return raw


def test_self_loop_without_guard_names_the_cycle() -> None:
    found = problems_of(_loop("a"))
    assert any(p.startswith("states.a.on.again: the cycle a → a can repeat forever") for p in found)


def test_two_state_cycle_names_every_state_and_transition() -> None:
    raw = _loop("done")
    raw["states"]["b"]["on"] = {"next": "a"}
    del raw["states"]["b"]["next"]
    found = [p for p in problems_of(raw) if "the cycle" in p]
    assert len(found) == 1
    assert "a → b → a" in found[0]
    assert "states.a.on.next" in found[0]
    assert "states.b.on.next" in found[0]


@pytest.mark.parametrize(
    ("guard", "branches", "step"),
    [
        ({"counter": "transitions", "at_least": 5}, [{"to": "a", "unless": "g"}, "b"], False),
        ({"counter": "transitions", "below": 5}, [{"to": "a", "if": "g"}, "b"], False),
        ({"counter": "visits.a", "at_least": "limit"}, [{"to": "a", "unless": "g"}, "b"], False),
        ({"counter": "visits.a", "at_least": 2}, [{"to": "b", "if": "g"}, "a"], False),
        ({"counter": "visits.a", "below": 2}, [{"to": "b", "unless": "g"}, "a"], False),
    ],
)
def test_loops_bounded_by_a_growing_counter_are_fine(
    guard: dict[str, Any], branches: Any, step: bool
) -> None:
    validate(structure_workflow(_loop(branches, guards={"g": guard}, step=step)), registry())


@pytest.mark.parametrize(
    ("guard", "branches", "why"),
    [
        ({"counter": "steps", "at_least": 3}, [{"to": "a", "unless": "g"}, "b"], "no step state"),
        ({"counter": "visits.b", "at_least": 3}, [{"to": "a", "unless": "g"}, "b"], "b off cycle"),
        ({"counter": "visits.a", "at_least": 3}, [{"to": "a", "if": "g"}, "b"], "turns on"),
        ({"counter": "visits.a", "below": 3}, [{"to": "a", "unless": "g"}, "b"], "turns on"),
        ({"counter": "visits.a", "below": 2}, [{"to": "b", "if": "g"}, "a"], "exit turns off"),
        ({"call": "g.flag"}, [{"to": "a", "unless": "g"}, "b"], "user guard"),
    ],
)
def test_loops_no_growing_counter_turns_off_are_rejected(
    guard: dict[str, Any], branches: Any, why: str
) -> None:
    found = problems_of(_loop(branches, guards={"g": guard}))
    assert any("the cycle a → a can repeat forever" in p for p in found), (why, found)


def test_steps_bound_a_loop_through_a_step_state() -> None:
    raw = _loop("done", guards={"g": {"counter": "steps", "at_least": 4}}, step=True)
    raw["states"]["b"]["on"] = {"next": [{"to": "a", "unless": "g"}, "done"]}
    del raw["states"]["b"]["next"]
    validate(structure_workflow(raw), registry())
    raw["states"]["b"]["step"] = False
    assert any("a → b → a" in p for p in problems_of(raw))


def test_a_large_workflow_with_many_unbounded_cycles_reports_a_few_quickly() -> None:
    states: dict[str, Any] = {}
    for i in range(60):
        after = f"s{i + 1}" if i < 59 else "done"
        back = {"to": f"s{max(0, i - 3)}", "unless": "enough"}
        states[f"s{i}"] = {"handler": "h.loop", "on": {"next": after, "again": [back, after]}}
    states["done"] = {"final": True}
    raw = base(initial="s0", states=states)  # `enough` counts visits of s0: on no cycle left
    raw["guards"]["enough"]["counter"] = "visits.s0"
    started = time.perf_counter()
    found = problems_of(raw)
    assert time.perf_counter() - started < 2
    assert len(found) == 5
    assert found[0].startswith("states.s1.on.next: the cycle s1 → s2 → s3 → s4 → s1 ")
    raw["guards"]["enough"]["counter"] = "transitions"
    validate(structure_workflow(raw), registry())


# -- guards, params, policies ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("guard", "location", "fragment"),
    [
        ({"counter": "steps", "at_least": 1, "call": "g.flag"}, "guards.g", "exactly one of"),
        ({}, "guards.g", "exactly one of"),
        ({"counter": "steps"}, "guards.g", "exactly one of `at_least` or `below`"),
        ({"counter": "steps", "at_least": 1, "below": 4}, "guards.g", "exactly one of `at_least`"),
        ({"call": "g.flag", "below": 4}, "guards.g.below", "only counter guards"),
        ({"counter": "attempts", "at_least": 1}, "guards.g.counter", 'unknown counter "attempts"'),
        ({"counter": "visits.nowhere", "at_least": 1}, "guards.g.counter", 'no state "nowhere"'),
        ({"counter": "steps", "at_least": -1}, "guards.g.at_least", "at least 0"),
        ({"counter": "steps", "at_least": "limt"}, "guards.g.at_least", 'unknown param "limt"'),
        ({"call": "g.none"}, "guards.g.call", "neither a registered name"),
    ],
)
def test_guard_definitions(guard: dict[str, Any], location: str, fragment: str) -> None:
    raw = base()
    raw["guards"]["g"] = guard
    assert_problem(raw, location, fragment)


@pytest.mark.parametrize("value", ["3", True, 2.5])
def test_counter_bound_naming_a_param_that_is_not_an_int(value: Any) -> None:
    raw = base(params={"limit": value})
    assert_problem(raw, "params.limit", "guards.enough.at_least", "must be an integer")


def test_handler_param_missing_or_of_the_wrong_type() -> None:
    raw = base(params={})
    raw["guards"]["enough"]["at_least"] = 3
    assert_problem(raw, "params.limit", "missing", '"h.forward"', "int")
    raw["params"] = {"limit": "3"}
    assert_problem(raw, "params.limit", "reads it as int", 'got str "3"')


def test_a_float_param_accepts_an_integer_default() -> None:
    @handler(outcomes=["next"], params={"ratio": float})
    async def ratio(ctx: Any) -> str:
        return "next"

    reg = registry()
    reg.add_handler("h.ratio", ratio)
    raw = base(params={"limit": 3, "ratio": 1})
    raw["states"]["b"]["handler"] = "h.ratio"
    validate(structure_workflow(raw), reg)


@pytest.mark.parametrize(
    ("limits", "params", "location", "fragment"),
    [
        ({"max_steps": 0}, {}, "limits.max_steps", "at least 1"),
        ({"max_transitions": -2}, {}, "limits.max_transitions", "at least 1"),
        ({"max_wall_ms": "wall"}, {}, "limits.max_wall_ms", 'unknown param "wall"'),
        ({"max_wall_ms": "wall"}, {"wall": 0}, "params.wall", "at least 1"),
        ({"max_steps": "steps"}, {"steps": "ten"}, "params.steps", "must be an integer"),
    ],
)
def test_limits(
    limits: dict[str, Any], params: dict[str, Any], location: str, fragment: str
) -> None:
    raw = base(limits=limits)
    raw["params"].update(params)
    assert_problem(raw, location, fragment)


@pytest.mark.parametrize(
    ("policy", "location"),
    [
        ({"retry": {"attempts": 0}}, "states.b.retry.attempts"),
        ({"retry": {"backoff_ms": -1}}, "states.b.retry.backoff_ms"),
        ({"retry": {"max_backoff_ms": -1}}, "states.b.retry.max_backoff_ms"),
        ({"timeout_ms": 0}, "states.b.timeout_ms"),
    ],
)
def test_retry_and_timeout_policies(policy: dict[str, Any], location: str) -> None:
    raw = base()
    raw["states"]["b"].update(policy)
    assert_problem(raw, location)


# -- everything at once, compiled guards, files ---------------------------------------------


def test_every_problem_is_reported_at_once() -> None:
    raw = base(initial="nowhere", limits={"max_steps": 0})
    raw["states"]["b"]["next"] = "gone"
    raw["states"]["done"]["handler"] = "h.forward"
    with pytest.raises(WorkflowError) as caught:
        validate(structure_workflow(raw), registry(), source="wf.toml")
    locations = {p.location for p in caught.value.problems}
    assert {"initial", "limits.max_steps", "states.b.on.next", "states.done.handler"} <= locations
    assert caught.value.source == "wf.toml"
    assert "wf.toml: initial: unknown state" in str(caught.value)


def _ctx(counters: dict[str, int], params: dict[str, Any]) -> RunContext:
    return RunContext(
        run_id="r",
        workflow="t",
        state="a",
        attempt=1,
        seq=0,
        params=params,
        counters=counters,
        data=None,
        inputs=None,
        key=None,
        services={},
        clock=ManualClock(),
        ids=SequentialIds(),
    )


@given(
    count=st.integers(0, 20),
    bound=st.integers(0, 20),
    by_param=st.booleans(),
    at_least=st.booleans(),
)
def test_counter_guards_compare_the_counter_with_the_bound_at_call_time(
    count: int, bound: int, by_param: bool, at_least: bool
) -> None:
    ref: int | str = "limit" if by_param else bound
    guard = CounterGuard(counter="visits.a", **{"at_least" if at_least else "below": ref})
    ctx = _ctx({"visits.a": count}, {"limit": bound})
    assert guard(ctx) is (count >= bound if at_least else count < bound)
    # a counter not counted yet is 0
    assert guard(_ctx({}, {"limit": bound})) is (bound <= 0 if at_least else bound > 0)


def test_compiled_counter_guard_reads_per_run_param_overrides() -> None:
    compiled = validate(structure_workflow(base()), registry())
    enough = compiled.guards["enough"]
    assert enough(_ctx({"visits.a": 3}, {"limit": 3})) is True
    assert enough(_ctx({"visits.a": 3}, {"limit": 5})) is False


def test_load_and_validate_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "wf.toml"
    path.write_text(
        textwrap.dedent("""
        name = "t"
        initial = "a"
        [states.a]
        handler = "h.forward"
        next = "b"
    """)
    )
    with pytest.raises(WorkflowError) as caught:
        load_and_validate(path, registry())
    assert caught.value.source == str(path)
    assert any(p.location == "states.a.on.next" for p in caught.value.problems)


# -- properties --------------------------------------------------------------------------------


def _problems(raw: dict[str, Any], reg: Registry) -> list[Any] | None:
    try:
        validate(structure_workflow(raw), reg)
    except WorkflowError as err:
        return list(err.problems)
    return None


@given(valid_workflows())
def test_generated_valid_workflows_validate(gen: GeneratedWorkflow) -> None:
    compiled = validate(structure_workflow(gen.raw), gen.registry)
    assert set(compiled.handlers) == set(gen.order)
    assert set(compiled.guards) == set(gen.raw.get("guards", {}))


def _assert_rejected(mutation: Mutation) -> None:
    found = _problems(mutation.raw, mutation.registry)
    assert found is not None, f"{mutation.kind} at {mutation.location} was accepted"
    assert reported(found, mutation.location), (mutation.kind, mutation.location, found)


@given(st.data())
def test_every_mutation_is_rejected_at_its_location(data: st.DataObject) -> None:
    gen = data.draw(valid_workflows(), label="workflow")
    _assert_rejected(data.draw(mutations(gen), label="mutation"))


@pytest.mark.parametrize("kind", MUTATION_KINDS)
@settings(max_examples=6, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_each_kind_of_mutation_is_rejected(kind: str, data: st.DataObject) -> None:
    gen = data.draw(valid_workflows(max_states=4), label="workflow")
    mutation = data.draw(mutations(gen, kinds=[kind]), label="mutation")
    _assert_rejected(mutation)
