"""I1 over random conversations mixing the agent's tools and the client's.

Each turn the model takes a few steps of the agent's own calls, then answers with text or with
calls to the client's tools (alone, or beside one of its own); the client then returns the
results of all, some or none of those calls, the user may speak instead, a stray result may
come along, and the client may barge in after any event. After every turn the stored log
satisfies I1 (open client calls allowed at its end) and I3, every request sent to the model
satisfies I1, and the calls left open are exactly the client calls of a turn that ended on them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from loopwright.adapters.storage.sql import open_store
from loopwright.engine.testing.chunks import CallSpec, Response, text_reply, tool_calls_reply
from loopwright.engine.testing.memory import ManualClock
from loopwright.schemas import Message
from loopwright.workflows.agent.client_tools import NO_RESULT, open_calls
from loopwright.workflows.agent.invariants import (
    check_log,
    check_request_matches,
    check_tool_pairing,
)
from loopwright.workflows.agent.memory_store import MemoryAgentStore
from loopwright.workflows.agent.ports import AgentStore

from .conftest import Loop, build_loop, get_weather
from .test_client_tools import CLIENT_TOOLS

Draw = Any  # hypothesis' `st.data()` object


class Model:
    """The scripted model of one example: the responses of the turn being played."""

    def __init__(self) -> None:
        self.responses: list[Response] = []
        self.ids: Iterator[int] = itertools.count(1)

    def respond(self, _body: Mapping[str, Any]) -> Response:
        return self.responses.pop(0)

    def own(self, data: Draw) -> CallSpec:
        city = data.draw(st.sampled_from(["Paris", "Oslo"]))
        args: dict[str, Any] = {"city": city}
        if data.draw(st.booleans()):
            args = {"pre_exec_msg": "One sec.", **args}
        return CallSpec(id=f"call_{next(self.ids)}", name="get_weather", arguments=json.dumps(args))

    def client(self, data: Draw) -> CallSpec:
        name = data.draw(st.sampled_from(["end_call", "transfer_call"]))
        args = "{}" if name == "end_call" else json.dumps({"to": "desk"})
        return CallSpec(id=f"call_{next(self.ids)}", name=name, arguments=args)

    def turn(self, data: Draw) -> tuple[list[Response], str, list[str]]:
        """This turn's responses, how the last one ends, and its client calls' ids."""
        responses = []
        for _ in range(data.draw(st.integers(0, 2))):
            calls = [self.own(data) for _ in range(data.draw(st.integers(1, 2)))]
            text = data.draw(st.sampled_from(["", "Checking."]))
            responses.append(tool_calls_reply(calls, text=text, fragments=2))
        ending = data.draw(st.sampled_from(["text", "client", "mixed"]))
        if ending == "text":
            return [*responses, text_reply("Done.", parts=2)], ending, []
        theirs = [self.client(data) for _ in range(data.draw(st.integers(1, 2)))]
        calls = theirs + ([self.own(data)] if ending == "mixed" else [])
        calls = data.draw(st.permutations(calls))
        text = data.draw(st.sampled_from(["", "Okay."]))
        reply = tool_calls_reply(calls, text=text, fragments=2)
        return [*responses, reply], ending, [c.id for c in calls if c in theirs]


def client_input(
    data: Draw, turn: int, pending: list[str], closed: list[str]
) -> tuple[list[Message], dict[str, str]]:
    """What the client sends: results for some open calls, maybe speech, maybe a stray result."""
    messages: list[Message] = []
    given: dict[str, str] = {}
    for call_id in data.draw(st.permutations(pending)):
        if data.draw(st.booleans()):
            given[call_id] = f"result of {call_id}"
            messages.append(
                Message(
                    id=f"res-{turn}-{call_id}",
                    role="tool",
                    content=given[call_id],
                    tool_call_id=call_id,
                )
            )
    if data.draw(st.booleans()):
        stray = data.draw(st.sampled_from(["call_nobody_made", *closed]))
        messages.append(
            Message(id=f"stray-{turn}", role="tool", content="late", tool_call_id=stray)
        )
    if not given or data.draw(st.booleans()):
        messages.append(Message(id=f"in-{turn}", role="user", content=f"turn {turn}"))
    return data.draw(st.permutations(messages)), given


async def play_turn(loop: Loop, run: Any, cut: int | None) -> bool:
    """Run the turn, stopping after event `cut` (a barge-in); True if it was cut off."""
    async with run:
        at = 0
        async for _ in run:
            if at == cut:
                break
            at += 1
    # A barge-in between two states may leave the input write landing: let it land.
    await asyncio.gather(*loop.services.input_writes.values())
    loop.services.input_writes.clear()
    return run.record.status == "cancelled"


def check_answers(
    log: list[Message], pending: list[str], given: dict[str, str], cut: bool
) -> list[str]:
    """Every call open before the turn got the client's result, or the no-result error."""
    found = []
    answers = {m.tool_call_id: m for m in log if m.role == "tool"}
    for call_id in pending:
        answer = answers.get(call_id)
        if answer is None:
            if not cut:
                found.append(f"{call_id} was left unanswered by a turn that ran")
        elif call_id in given and answer.content != given[call_id]:
            found.append(f"{call_id} answered {answer.content!r}, the client sent {given}")
        elif call_id not in given and NO_RESULT not in (answer.content or ""):
            found.append(f"{call_id} answered {answer.content!r} with no client result")
    return found


async def play(data: Draw, agents: AgentStore, clock: ManualClock) -> None:
    model = Model()
    loop = await build_loop(model.respond, agents=agents, clock=clock, tools=(get_weather,))
    max_steps = data.draw(st.integers(1, 4), label="max_steps")
    seen = 0
    for turn in range(data.draw(st.integers(2, 4), label="turns")):
        before = list(await loop.log())
        known = {m.id for m in before}
        pending = [c.id for c in open_calls(before)]
        closed = [m.tool_call_id or "" for m in before if m.role == "tool"]
        messages, given = client_input(data, turn, pending, closed)
        model.responses, ending, theirs = model.turn(data)
        cut = data.draw(st.none() | st.integers(0, 25), label="cut after event")
        run = loop.start(messages, client_tools=CLIENT_TOOLS, max_steps=max_steps)
        was_cut = await play_turn(loop, run, cut)
        log = list(await loop.log())
        context = (await loop.agents.load_context(loop.agent.id)).messages
        found: list[Any] = check_log(log, context, open_end=True)
        for body in loop.llm.requests[seen:]:
            found += check_tool_pairing(body["messages"], where=f"turn {turn} request")
        if not was_cut and len(loop.llm.requests) > seen:
            # The first request saw the stored context up to the turn's first reply.
            first = next(
                i for i, m in enumerate(context) if m.id not in known and m.role == "assistant"
            )
            found += check_request_matches(loop.llm.requests[seen], context[:first])
        seen = len(loop.llm.requests)
        found += check_answers(log, pending, given, was_cut)
        event(f"turn {'cut' if was_cut else run.record.stop_reason}, ending {ending}")
        event(f"open calls: {len(pending)}, client results: {len(given)}")
        if not was_cut and not model.responses and run.record.stop_reason == "final":
            still_open = [c.id for c in open_calls(log)]
            if still_open != theirs:
                found.append(f"open calls {still_open}, the turn ended on {theirs} ({ending})")
        assert not found, "\n".join(map(str, found))
    await loop.engine.aclose()


@given(data=st.data())
def test_i1_holds_over_own_and_client_calls_on_memory(data: Draw) -> None:
    async def main() -> None:
        clock = ManualClock()
        await play(data, MemoryAgentStore(clock=clock), clock)

    asyncio.run(main())


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with the schema in place (copied per example)."""
    path = tmp_path_factory.mktemp("client-tools") / "empty.db"

    async def create() -> None:
        await (await open_store(f"sqlite:///{path}")).aclose()

    asyncio.run(create())
    return path


@settings(max_examples=max(5, settings().max_examples // 4))
@given(data=st.data())
def test_i1_holds_over_own_and_client_calls_on_sqlite(data: Draw, empty_db: Path) -> None:
    async def main(path: Path) -> None:
        clock = ManualClock()
        store = await open_store(f"sqlite:///{path}", clock=clock)
        try:
            await play(data, store, clock)
        finally:
            await store.aclose()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "loop.db"
        path.write_bytes(empty_db.read_bytes())
        asyncio.run(main(path))
