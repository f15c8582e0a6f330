"""Streaming handlers as the run iterates them: events, the outcome, the handler closed,
with and without a state timeout (the two paths of `Run._attempt`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loopwright.engine import Outcome, handler
from loopwright.schemas import RunFailed, RunFinished, TextDelta

from .helpers import collect, compile_workflow, make_engine


def one_state(timeout_ms: int | None) -> dict[str, Any]:
    state: dict[str, Any] = {"handler": "h", "next": "end"}
    if timeout_ms is not None:
        state["timeout_ms"] = timeout_ms
    return {"name": "w", "initial": "s", "states": {"s": state, "end": {"final": True}}}


def texts(events: list[Any]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


@pytest.mark.parametrize("timeout_ms", [None, 60_000])
async def test_events_then_the_outcome_and_the_handler_is_closed(timeout_ms: int | None) -> None:
    closed: list[str] = []

    @handler(outcomes=["next"])
    async def h(ctx: Any) -> Any:
        try:
            yield TextDelta("a")
            yield TextDelta("b")
            yield Outcome("next", data={"said": "ab"})
            yield TextDelta("never read")  # nothing after the outcome is read
        finally:
            closed.append(ctx.state)

    run = make_engine().start(compile_workflow(one_state(timeout_ms), {"h": h}))
    events = await collect(run)
    assert texts(events) == ["a", "b"]
    assert events[-1] == RunFinished("final")
    assert run.data == {"said": "ab"}
    assert closed == ["s"]


@pytest.mark.parametrize("timeout_ms", [None, 60_000])
async def test_a_handler_that_ends_without_an_outcome_fails_the_run(timeout_ms: int | None) -> None:
    @handler(outcomes=["next"])
    async def h(ctx: Any) -> Any:
        yield TextDelta("a")

    events = await collect(make_engine().start(compile_workflow(one_state(timeout_ms), {"h": h})))
    assert texts(events) == ["a"]
    assert isinstance(events[-1], RunFailed)
    assert events[-1].code == "bad_outcome"
    assert "without yielding an Outcome" in events[-1].message


async def test_a_streaming_state_past_its_timeout_fails_after_its_events() -> None:
    closed: list[bool] = []

    @handler(outcomes=["next"])
    async def h(ctx: Any) -> Any:
        try:
            yield TextDelta("a")
            await asyncio.Event().wait()  # never set: the deadline ends it
            yield Outcome("next")
        finally:
            closed.append(True)

    events = await collect(make_engine().start(compile_workflow(one_state(20), {"h": h})))
    assert texts(events) == ["a"]
    assert isinstance(events[-1], RunFailed)
    assert (events[-1].code, events[-1].retryable) == ("timeout", True)
    assert closed == [True]


@pytest.mark.parametrize("timeout_ms", [None, 60_000])
async def test_a_consumer_that_stops_closes_the_handler(timeout_ms: int | None) -> None:
    closed: list[bool] = []

    @handler(outcomes=["next"])
    async def h(ctx: Any) -> Any:
        try:
            for i in range(100):
                yield TextDelta(str(i))
            yield Outcome("next")
        finally:
            closed.append(True)

    engine = make_engine()
    async with engine.start(compile_workflow(one_state(timeout_ms), {"h": h})) as run:
        async for event in run:
            if isinstance(event, TextDelta) and event.text == "3":
                break
    assert closed == [True]
    assert run.record.status == "cancelled"
