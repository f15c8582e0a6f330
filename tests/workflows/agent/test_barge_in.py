"""Barge-in: a turn cut off mid-way leaves a valid log (I1), and an unheard turn is discarded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest

from loopwright.engine.testing.chunks import (
    CallSpec,
    Hang,
    Response,
    role_chunk,
    text_reply,
    tool_calls_reply,
)
from loopwright.schemas import (
    ClientToolCall,
    Event,
    Message,
    RunFinished,
    StateEntered,
    TextDelta,
    ToolCallStarted,
    ToolResult,
)
from loopwright.workflows.agent.client_tools import answer_id, open_calls
from loopwright.workflows.agent.errors import DiscardRefusedError
from loopwright.workflows.agent.invariants import check_spoken
from loopwright.workflows.agent.tools import CANCELLED

from .conftest import TOOL_LOG, Loop, collect, get_weather
from .test_client_tools import CLIENT_NAMES, CLIENT_TOOLS, assert_valid, end_call, user, weather

GATES: dict[str, asyncio.Event] = {}
"""Per test: `fast_done` (ping answered) and `held` (hold is running and will not finish)."""


async def ping(word: str) -> str:
    """Answers at once.

    Args:
        word: Anything.
    """
    GATES["fast_done"].set()
    return f"pong {word}"


async def hold(word: str) -> str:
    """Runs until it is cancelled (started once ping has answered).

    Args:
        word: Anything.
    """
    await GATES["fast_done"].wait()
    GATES["held"].set()
    await asyncio.Event().wait()
    return word


CUT = {"status": "error", "error": CANCELLED}


def calls_of(message: Message) -> list[str]:
    return [call.id for call in message.tool_calls]


async def cut_at(run: Any, kind: type[Any]) -> list[Event]:
    """Iterate the run until the first event of `kind`, then stop listening (a barge-in)."""
    heard: list[Event] = []
    async with run:
        async for event in run:
            heard.append(event)
            if isinstance(event, kind):
                break
    return heard


@pytest.mark.parametrize("sqlite", [False, True], ids=["memory", "sqlite"])
async def test_a_cancel_while_tools_run_stores_every_call_with_an_answer(
    make_loop: Any, sqlite: bool
) -> None:
    GATES.update(fast_done=asyncio.Event(), held=asyncio.Event())
    calls = [
        CallSpec(id="c_fast", name="ping", arguments='{"word": "a"}'),
        CallSpec(id="c_slow", name="hold", arguments='{"word": "b"}'),
        end_call(),
    ]
    script = [tool_calls_reply(calls, text="On it."), text_reply("Where were we?")]
    loop: Loop = await make_loop(script, tools=(ping, hold), sqlite=sqlite)
    run = loop.start([user("go", "in-1")], client_tools=CLIENT_TOOLS)
    consumer = asyncio.create_task(collect(run))
    await GATES["held"].wait()  # ping has answered, hold never will
    run.cancel()
    events = await consumer
    assert events[-1] == RunFinished("cancelled")
    assert run.record.status == "cancelled"
    log = await assert_valid(loop)
    assert [m.role for m in log] == ["user", "assistant", "tool", "tool"]
    assert calls_of(log[1]) == ["c_fast", "c_slow", "call_end"]
    assert [(m.tool_call_id, m.content) for m in log[2:]] == [
        ("c_fast", "pong a"),
        ("c_slow", json.dumps(CUT)),
    ]
    assert [c.id for c in open_calls(log)] == ["call_end"]
    assert loop.services.input_writes == {}
    # The next turn runs on that context: the client call gets its answer first.
    nxt = loop.start([user("sorry, go on", "in-2")], client_tools=CLIENT_TOOLS)
    assert (await collect(nxt))[-1] == RunFinished("final")
    log = await assert_valid(loop)
    assert log[4].id == answer_id(nxt.id, "call_end")
    assert [m.role for m in log[4:]] == ["tool", "user", "assistant"]


@pytest.mark.parametrize(
    ("cut", "ran"),
    [(ClientToolCall, False), (ToolCallStarted, False), (ToolResult, True)],
    ids=["at-client-call", "at-tool-start", "at-tool-result"],
)
async def test_a_barge_in_after_the_answer_streamed_stores_the_whole_step(
    make_loop: Any, cut: type[Any], ran: bool
) -> None:
    loop: Loop = await make_loop(
        [tool_calls_reply([weather(), end_call()], text="Let me see.")], tools=(get_weather,)
    )
    run = loop.start([user("weather?", "in-1")], client_tools=CLIENT_TOOLS)
    heard = await cut_at(run, cut)
    assert run.record.status == "cancelled"
    log = await assert_valid(loop)
    assert [m.role for m in log] == ["user", "assistant", "tool"]
    assert calls_of(log[1]) == ["call_1", "call_end"]
    assert not log[1].incomplete
    ok = {"city": "Paris", "forecast": "rain"}
    expected = (ok, [("get_weather", {"city": "Paris"})]) if ran else (CUT, [])
    assert (json.loads(log[2].content or ""), TOOL_LOG) == expected
    assert not check_spoken(heard, log[1:2], client_tools=CLIENT_NAMES)


# -- discarding an unheard turn ------------------------------------------------------------------


async def abort_before_the_stream(run: Any) -> None:
    """The client leaves before any text: the input write is under way (or done), the model
    not asked yet."""
    async with run:
        async for event in run:
            if isinstance(event, StateEntered) and event.state == "stream":
                break


@pytest.mark.parametrize("sqlite", [False, True], ids=["memory", "sqlite"])
async def test_an_unheard_turn_is_discarded_and_the_longer_utterance_stored_once(
    make_loop: Any, sqlite: bool
) -> None:
    loop: Loop = await make_loop([text_reply("A taxi, sure.")], sqlite=sqlite)
    run = loop.start([user("I want", "in-1")])
    await abort_before_the_stream(run)
    await loop.services.discard_turn(loop.agent.id, run.id)
    assert loop.services.input_writes == {}
    assert await loop.log() == []
    await collect(loop.start([user("I want a taxi", "in-2")]))
    log = await assert_valid(loop)
    assert [(m.role, m.content) for m in log] == [
        ("user", "I want a taxi"),
        ("assistant", "A taxi, sure."),
    ]
    assert [m["role"] for m in loop.llm.requests[0]["messages"]] == ["system", "user"]


@pytest.mark.parametrize("sqlite", [False, True], ids=["memory", "sqlite"])
async def test_a_turn_cancelled_while_the_model_is_silent_leaves_nothing_behind(
    make_loop: Any, sqlite: bool
) -> None:
    asked = asyncio.Event()
    replies = iter([Response(steps=(role_chunk(), Hang())), text_reply("Sure.")])

    def respond(_body: Mapping[str, Any]) -> Response:
        asked.set()
        return next(replies)

    loop: Loop = await make_loop(respond, sqlite=sqlite, llm_timeout=3600.0)  # Hang: forever
    run = loop.start([user("I want", "in-1")])
    consumer = asyncio.create_task(collect(run))
    await asked.wait()
    run.cancel()
    assert (await consumer)[-1] == RunFinished("cancelled")
    assert loop.services.input_writes == {}  # the turn settled its input write
    assert [m.content for m in await loop.log()] == ["I want"]
    await loop.services.discard_turn(loop.agent.id, run.id)
    assert await loop.log() == []
    events = await collect(loop.start([user("I want a taxi", "in-2")]))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Sure."
    assert [m.content for m in await assert_valid(loop)] == ["I want a taxi", "Sure."]


async def test_discarding_a_turn_that_answered_client_calls_removes_the_answers(
    make_loop: Any,
) -> None:
    script = [tool_calls_reply([end_call()], text="Bye?"), text_reply("Staying, then.")]
    loop: Loop = await make_loop(script)
    await collect(loop.start([user("bye", "in-1")], client_tools=CLIENT_TOOLS))
    run = loop.start([user("wait", "in-2")], client_tools=CLIENT_TOOLS)
    await abort_before_the_stream(run)
    await loop.services.discard_turn(loop.agent.id, run.id)
    log = await assert_valid(loop)
    assert [m.role for m in log] == ["user", "assistant"]  # the call is open again
    third = loop.start([user("wait, I'll stay", "in-3")], client_tools=CLIENT_TOOLS)
    await collect(third)
    log = await assert_valid(loop)
    assert [m.id for m in log[2:4]] == [answer_id(third.id, "call_end"), "in-3"]


async def test_only_the_newest_turn_can_be_discarded(make_loop: Any) -> None:
    loop: Loop = await make_loop([text_reply("One."), text_reply("Two.")])
    first = loop.start([user("one", "in-1")])
    await collect(first)
    await collect(loop.start([user("two", "in-2")]))
    with pytest.raises(DiscardRefusedError):
        await loop.services.discard_turn(loop.agent.id, first.id)
    assert len(await assert_valid(loop)) == 4
    assert loop.services.cached(loop.agent.id) is None  # reloaded at the next turn
