"""Runner behaviour: outcomes, guards, hooks, retries, timeouts, caps, cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loopwright.engine import Outcome, ParamError, StepError, handler
from loopwright.schemas import (
    Retrying,
    RunFailed,
    RunFinished,
    RunStarted,
    StateEntered,
    TextDelta,
)

from .helpers import collect, compile_workflow, make_engine


@handler(outcomes=["next"])
async def noop(ctx: Any) -> str:
    return "next"


@handler(outcomes=["next"])
async def talk(ctx: Any) -> Any:
    for word in ("a", "b", "c"):
        yield TextDelta(word)
    yield Outcome("next", data={"said": 3})


LINEAR = {
    "name": "linear",
    "initial": "one",
    "states": {
        "one": {"handler": "noop", "next": "two"},
        "two": {"handler": "talk", "next": "end"},
        "end": {"final": True},
    },
}


async def test_events_stream_in_order_and_end_with_one_terminal() -> None:
    compiled = compile_workflow(LINEAR, {"noop": noop, "talk": talk})
    engine = make_engine()
    run = engine.start(compiled)
    events = await collect(run)
    assert events == [
        RunStarted("run-1", "linear"),
        StateEntered("one", 0),
        StateEntered("two", 1),
        TextDelta("a"),
        TextDelta("b"),
        TextDelta("c"),
        RunFinished("final"),
    ]
    assert run.record.status == "finished"
    assert run.record.visited == ("one", "two")
    assert run.data == {"said": 3}
    stored = await engine.store.load(run.id)
    assert stored == run.record


async def test_undeclared_outcome_fails_with_state_and_outcome_named() -> None:
    # Validation proves files and declarations agree; a handler returning a name it never
    # declared is caught at run time.
    @handler(outcomes=["next"])
    async def liar(ctx: Any) -> str:
        return "surprise"

    compiled = compile_workflow(
        {
            "name": "u",
            "initial": "s",
            "states": {"s": {"handler": "liar", "next": "e"}, "e": {"final": True}},
        },
        {"liar": liar},
    )
    events = await collect(make_engine().start(compiled))
    terminal = events[-1]
    assert isinstance(terminal, RunFailed)
    assert terminal.code == "undeclared_outcome"
    assert "'s'" in terminal.message and "'surprise'" in terminal.message


async def test_guards_pick_the_first_passing_branch_and_hooks_run() -> None:
    seen: list[str] = []

    @handler(outcomes=["again"])
    async def loop(ctx: Any) -> str:
        return "again"

    compiled = compile_workflow(
        {
            "name": "g",
            "initial": "loop",
            "params": {"max_loops": 3},
            "guards": {"enough": {"counter": "visits.loop", "at_least": "max_loops"}},
            "states": {
                "loop": {
                    "handler": "loop",
                    "on": {"again": [{"to": "end", "if": "enough"}, {"to": "loop"}]},
                    "hooks": {"on_enter": ["mark"], "after": ["mark_after"]},
                },
                "end": {"final": True},
            },
        },
        {"loop": loop},
        hooks={
            "mark": lambda ctx: seen.append("enter"),
            "mark_after": lambda ctx: seen.append("after"),
        },
    )
    run = make_engine().start(compiled, params={"max_loops": 2})
    await collect(run)
    assert run.record.visited == ("loop", "loop")
    # on_enter runs for the initial state too; a self-loop exits, enters, then runs `after`.
    assert seen == ["enter", "enter", "after", "after"]


async def test_param_overrides_are_type_checked() -> None:
    compiled = compile_workflow(
        {
            "name": "p",
            "initial": "a",
            "params": {"n": 3},
            "states": {"a": {"handler": "noop", "next": "e"}, "e": {"final": True}},
        },
        {"noop": noop},
    )
    engine = make_engine()
    with pytest.raises(ParamError, match="'n' must be int"):
        engine.start(compiled, params={"n": "3"})
    with pytest.raises(ParamError, match="unknown param 'm'"):
        engine.start(compiled, params={"m": 1})


def _flaky(codes: list[StepError | None]) -> Any:
    @handler(outcomes=["next"])
    async def flaky(ctx: Any) -> str:
        err = codes.pop(0)
        if err is not None:
            raise err
        return "next"

    return flaky


RETRYING = {
    "name": "r",
    "initial": "call",
    "states": {
        "call": {
            "handler": "flaky",
            "next": "end",
            "retry": {"on": ["rate_limited", "server_error"], "attempts": 3, "backoff_ms": 1},
        },
        "end": {"final": True},
    },
}


async def test_retry_with_backoff_then_success() -> None:
    script: list[StepError | None] = [StepError("server_error", "boom"), None]
    compiled = compile_workflow(RETRYING, {"flaky": _flaky(script)})
    events = await collect(make_engine().start(compiled))
    assert Retrying("call", 1, "server_error", 1) in events
    assert events[-1] == RunFinished("final")


async def test_retry_honours_retry_after() -> None:
    script: list[StepError | None] = [
        StepError("rate_limited", "slow down", retry_after=0.05),
        None,
    ]
    compiled = compile_workflow(RETRYING, {"flaky": _flaky(script)})
    loop = asyncio.get_running_loop()
    began = loop.time()
    events = await collect(make_engine().start(compiled))
    assert loop.time() - began >= 0.05
    assert Retrying("call", 1, "rate_limited", 50) in events


async def test_retries_exhausted_and_unlisted_codes_fail_the_run() -> None:
    script: list[StepError | None] = [StepError("server_error", f"boom {i}") for i in range(3)]
    compiled = compile_workflow(RETRYING, {"flaky": _flaky(script)})
    events = await collect(make_engine().start(compiled))
    assert [e for e in events if isinstance(e, Retrying)] == [
        Retrying("call", 1, "server_error", 1),
        Retrying("call", 2, "server_error", 2),
    ]
    assert events[-1] == RunFailed("server_error", "boom 2", False)

    script = [StepError("auth", "bad key")]
    compiled = compile_workflow(RETRYING, {"flaky": _flaky(script)})
    events = await collect(make_engine().start(compiled))
    assert events[-1] == RunFailed("auth", "bad key", False)
    assert not any(isinstance(e, Retrying) for e in events)


async def test_no_retry_after_output_when_before_output_only() -> None:
    calls = 0

    @handler(outcomes=["next"])
    async def speaks_then_fails(ctx: Any) -> Any:
        nonlocal calls
        calls += 1
        yield TextDelta("partial")
        raise StepError("server_error", "cut")

    raw = {
        **RETRYING,
        "states": {**RETRYING["states"], "call": {**RETRYING["states"]["call"], "handler": "s"}},
    }
    compiled = compile_workflow(raw, {"s": speaks_then_fails})
    events = await collect(make_engine().start(compiled))
    assert calls == 1
    assert events[-1] == RunFailed("server_error", "cut", False)


async def test_state_timeout_becomes_a_timeout_error() -> None:
    @handler(outcomes=["next"])
    async def slow(ctx: Any) -> str:
        await asyncio.sleep(10)
        return "next"

    compiled = compile_workflow(
        {
            "name": "t",
            "initial": "s",
            "states": {
                "s": {"handler": "slow", "next": "e", "timeout_ms": 20},
                "e": {"final": True},
            },
        },
        {"slow": slow},
    )
    events = await collect(make_engine().start(compiled))
    assert isinstance(events[-1], RunFailed)
    assert events[-1].code == "timeout"


async def test_handler_exception_is_reported_not_raised() -> None:
    @handler(outcomes=["next"])
    async def broken(ctx: Any) -> str:
        raise KeyError("missing")

    compiled = compile_workflow(
        {
            "name": "x",
            "initial": "s",
            "states": {"s": {"handler": "broken", "next": "e"}, "e": {"final": True}},
        },
        {"broken": broken},
    )
    run = make_engine().start(compiled)
    events = await collect(run)
    assert events[-1] == RunFailed("handler_error", "state 's': KeyError: 'missing'", False)
    assert run.record.status == "failed"


LOOPING = {
    "name": "cap",
    "initial": "a",
    "params": {"n": 100},
    "guards": {"done": {"counter": "visits.a", "at_least": "n"}},
    "limits": {"max_steps": 3},
    "states": {
        "a": {
            "handler": "noop",
            "step": True,
            "on": {"next": [{"to": "e", "if": "done"}, {"to": "a"}]},
        },
        "e": {"final": True},
    },
}


async def test_step_cap_ends_the_run_with_its_stop_reason() -> None:
    compiled = compile_workflow(LOOPING, {"noop": noop})
    run = make_engine().start(compiled)
    events = await collect(run)
    assert events[-1] == RunFinished("max_steps")
    assert run.record.counters["steps"] == 3
    assert run.record.stop_reason == "max_steps"


async def test_transition_cap_ends_the_run_with_its_stop_reason() -> None:
    raw = {**LOOPING, "limits": {"max_transitions": 5}}
    compiled = compile_workflow(raw, {"noop": noop})
    run = make_engine().start(compiled)
    events = await collect(run)
    assert events[-1] == RunFinished("max_transitions")
    assert run.record.counters["transitions"] == 5


async def test_wall_clock_cap_ends_the_run_with_its_stop_reason() -> None:
    engine = make_engine()

    @handler(outcomes=["next"])
    async def ticking(ctx: Any) -> str:
        ctx.clock.advance(1.0)
        return "next"

    raw = {
        **LOOPING,
        "limits": {"max_wall_ms": 2500},
        "states": {**LOOPING["states"], "a": {**LOOPING["states"]["a"], "handler": "t"}},
    }
    compiled = compile_workflow(raw, {"t": ticking})
    events = await collect(engine.start(compiled))
    assert events[-1] == RunFinished("max_wall_time")


SLOW_STREAM = {
    "name": "slow",
    "initial": "s",
    "states": {"s": {"handler": "slow", "next": "e"}, "e": {"final": True}},
}


def _slow_stream(closed: list[bool]) -> Any:
    @handler(outcomes=["next"])
    async def slow(ctx: Any) -> Any:
        try:
            for i in range(1000):
                yield TextDelta(str(i))
                await asyncio.sleep(0.01)
            yield Outcome("next")
        finally:
            closed.append(True)

    return slow


async def test_consumer_that_stops_iterating_cancels_the_run() -> None:
    closed: list[bool] = []
    compiled = compile_workflow(SLOW_STREAM, {"slow": _slow_stream(closed)})
    engine = make_engine()
    async with engine.start(compiled) as run:
        async for event in run:
            if isinstance(event, TextDelta) and event.text == "2":
                break
    assert closed == [True]
    stored = await engine.store.load(run.id)
    assert stored is not None and stored.status == "cancelled"
    assert stored.stop_reason == "cancelled"


async def test_cancelled_consumer_task_cancels_the_handler() -> None:
    closed: list[bool] = []
    compiled = compile_workflow(SLOW_STREAM, {"slow": _slow_stream(closed)})
    engine = make_engine()
    run = engine.start(compiled)
    task = asyncio.ensure_future(collect(run))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed == [True]
    assert run.record.status == "cancelled"


async def test_run_cancel_ends_with_a_cancelled_terminal_event() -> None:
    closed: list[bool] = []
    compiled = compile_workflow(SLOW_STREAM, {"slow": _slow_stream(closed)})
    run = make_engine().start(compiled)
    events = []
    async for event in run:
        events.append(event)
        if isinstance(event, TextDelta) and event.text == "1":
            asyncio.get_running_loop().call_later(0.002, run.cancel)
    assert events[-1] == RunFinished("cancelled")
    assert sum(isinstance(e, (RunFinished, RunFailed)) for e in events) == 1
    assert closed == [True]
    assert run.record.status == "cancelled"
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
