"""Client-side tools: their calls go back to the client, and the next turn answers them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from loopwright.adapters.tools.python import PythonToolbox
from loopwright.engine import Engine
from loopwright.engine.testing.chunks import CallSpec, text_reply, tool_calls_reply
from loopwright.engine.testing.memory import MemoryRunStore
from loopwright.schemas import (
    ClientToolCall,
    Message,
    RunFinished,
    RunRecord,
    StateEntered,
    TextDelta,
    ToolCall,
    ToolCallStarted,
)
from loopwright.workflows.agent.client_tools import (
    NO_RESULT,
    answer_id,
    offered_client_tools,
    open_calls,
    split_calls,
    turn_inputs,
)
from loopwright.workflows.agent.invariants import check_log, check_spoken, check_tool_pairing
from loopwright.workflows.agent.services import AgentServices

from .conftest import TOOL_LOG, Loop, collect, get_weather


def client_tool(name: str, **properties: Any) -> dict[str, Any]:
    parameters = {"type": "object", "properties": properties}
    return {
        "type": "function",
        "function": {"name": name, "description": "the client's", "parameters": parameters},
    }


END_CALL = client_tool("end_call")
TRANSFER = client_tool("transfer_call", to={"type": "string"})
CLIENT_TOOLS = (END_CALL, TRANSFER)
CLIENT_NAMES = ("end_call", "transfer_call")


def end_call(call_id: str = "call_end") -> CallSpec:
    return CallSpec(id=call_id, name="end_call", arguments="{}")


def transfer(call_id: str = "call_transfer", to: str = "desk") -> CallSpec:
    return CallSpec(id=call_id, name="transfer_call", arguments=json.dumps({"to": to}))


def weather(call_id: str = "call_1", pre: str = "One sec.") -> CallSpec:
    arguments = json.dumps({"pre_exec_msg": pre, "city": "Paris"})
    return CallSpec(id=call_id, name="get_weather", arguments=arguments)


def user(text: str, id: str) -> Message:
    return Message(id=id, role="user", content=text)


def result(call_id: str, content: str, id: str) -> Message:
    return Message(id=id, role="tool", content=content, tool_call_id=call_id)


async def assert_valid(loop: Loop) -> list[Message]:
    """I1 (and I3) on the stored log, open calls allowed at its end, and on every request."""
    log = await loop.log()
    context = (await loop.agents.load_context(loop.agent.id)).messages
    found = check_log(log, context, open_end=True)
    for at, body in enumerate(loop.llm.requests):
        found += check_tool_pairing(body["messages"], where=f"request {at}")
    assert not found, "\n".join(map(str, found))
    return list(log)


def kinds(events: Sequence[Any]) -> list[str]:
    """Event types in order, states left out and a run of text deltas shown once."""
    out: list[str] = []
    for event in events:
        kind = type(event).__name__
        if isinstance(event, StateEntered) or (kind == "TextDelta" and out[-1:] == [kind]):
            continue
        out.append(kind)
    return out


async def test_a_client_call_is_returned_not_run_and_ends_the_turn(make_loop: Any) -> None:
    loop = await make_loop([tool_calls_reply([end_call()], text="Goodbye.")])
    run = loop.start([user("bye", "msg-in")], client_tools=CLIENT_TOOLS)
    events = await collect(run)
    assert kinds(events) == ["RunStarted", "TextDelta", "ClientToolCall", "Usage", "RunFinished"]
    assert ClientToolCall(0, "call_end", "end_call", "{}") in events
    assert events[-1] == RunFinished("final")
    assert run.record.visited == ("rebuild_memory", "request", "stream", "persist")
    assert run.data.client_calls
    assert TOOL_LOG == []
    log = await assert_valid(loop)
    assert [(m.role, m.content) for m in log] == [("user", "bye"), ("assistant", "Goodbye.")]
    assert [c.id for c in log[1].tool_calls] == ["call_end"]
    assert check_log(log, log) != []  # the end is open: only a client call may leave it so
    # The client's tools are offered as sent (no pre_exec_msg), beside the agent's own.
    (body,) = loop.llm.requests
    assert body["tools"][1:] == list(CLIENT_TOOLS)
    own = body["tools"][0]["function"]
    assert own["name"] == "get_weather"
    assert "pre_exec_msg" in own["parameters"]["properties"]


async def test_a_mixed_step_runs_the_agents_calls_and_returns_the_clients(
    make_loop: Any,
) -> None:
    script = [tool_calls_reply([end_call(), weather(), transfer()], text="Right.")]
    loop = await make_loop(script)
    events = await collect(loop.start([user("weather, then bye", "in")], client_tools=CLIENT_TOOLS))
    assert events[-1] == RunFinished("final")
    assert kinds(events)[1:-1] == [
        "TextDelta",
        "ClientToolCall",
        "ClientToolCall",
        "Usage",
        "ToolCallStarted",
        "ToolResult",
    ]
    calls = [e for e in events if isinstance(e, ClientToolCall)]
    assert calls == [
        ClientToolCall(0, "call_end", "end_call", "{}"),
        ClientToolCall(1, "call_transfer", "transfer_call", '{"to": "desk"}'),
    ]
    assert [e.id for e in events if isinstance(e, ToolCallStarted)] == ["call_1"]
    assert TOOL_LOG == [("get_weather", {"city": "Paris"})]
    assert len(loop.llm.requests) == 1  # the turn ends: the client runs its calls first
    log = await assert_valid(loop)
    assert [m.role for m in log] == ["user", "assistant", "tool"]
    assert [c.id for c in log[1].tool_calls] == ["call_end", "call_1", "call_transfer"]
    assert log[2].tool_call_id == "call_1"
    turn = [m for m in log if m.role == "assistant"]
    assert not check_spoken(events, turn, client_tools=CLIENT_NAMES)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Right. One sec."


async def test_a_client_tool_named_like_an_agent_tool_gives_way(
    make_loop: Any, caplog: pytest.LogCaptureFixture
) -> None:
    theirs = client_tool("get_weather", town={"type": "string"})
    loop = await make_loop([tool_calls_reply([weather()]), text_reply("Rain.")])
    with caplog.at_level(logging.WARNING, logger="loopwright.agent"):
        events = await collect(
            loop.start([user("weather?", "in")], client_tools=(theirs, END_CALL))
        )
    assert events[-1] == RunFinished("final")
    assert not [e for e in events if isinstance(e, ClientToolCall)]
    assert TOOL_LOG == [("get_weather", {"city": "Paris"})]  # the agent's own ran
    for body in loop.llm.requests:  # two steps, and the clash dropped from both
        names = [t["function"]["name"] for t in body["tools"]]
        assert names == ["get_weather", "end_call"]
        assert "pre_exec_msg" in body["tools"][0]["function"]["parameters"]["properties"]
    clashes = [r for r in caplog.records if "share names" in r.getMessage()]
    assert len(clashes) == 1  # once a turn
    assert "get_weather" in clashes[0].getMessage()
    await assert_valid(loop)


async def open_two_client_calls(make_loop: Any, then: Sequence[Any]) -> Loop:
    loop: Loop = await make_loop(
        [tool_calls_reply([end_call("call_a"), transfer("call_b")], text="Okay."), *then]
    )
    await collect(loop.start([user("transfer me", "in-1")], client_tools=CLIENT_TOOLS))
    assert [c.id for c in open_calls(await loop.log())] == ["call_a", "call_b"]
    return loop


async def test_the_clients_results_answer_the_open_calls_in_call_order(make_loop: Any) -> None:
    loop = await open_two_client_calls(make_loop, [text_reply("Transferred.")])
    answers = [result("call_b", "ringing", "res-b"), result("call_a", "ok", "res-a")]
    events = await collect(loop.start(answers, client_tools=CLIENT_TOOLS))
    assert events[-1] == RunFinished("final")
    sent = loop.llm.requests[1]["messages"]
    assert sent[-3]["tool_calls"][0]["id"] == "call_a"
    assert sent[-2:] == [
        {"role": "tool", "tool_call_id": "call_a", "content": "ok"},
        {"role": "tool", "tool_call_id": "call_b", "content": "ringing"},
    ]
    log = await assert_valid(loop)
    assert [(m.id, m.name) for m in log[2:4]] == [("res-a", "end_call"), ("res-b", "transfer_call")]
    assert not check_log(log, log)  # closed again


async def test_calls_left_unanswered_get_an_error_the_model_can_act_on(make_loop: Any) -> None:
    loop = await open_two_client_calls(make_loop, [text_reply("Sure, what is it?")])
    run = loop.start(
        [result("call_a", "ok", "res-a"), user("wait, one more thing", "in-2")],
        client_tools=CLIENT_TOOLS,
    )
    await collect(run)
    log = await assert_valid(loop)
    assert [m.role for m in log] == ["user", "assistant", "tool", "tool", "user", "assistant"]
    synthesized = log[3]
    assert synthesized.id == answer_id(run.id, "call_b")
    assert synthesized.tool_call_id == "call_b"
    assert json.loads(synthesized.content or "") == {
        "status": "error",
        "error": NO_RESULT + " (the user spoke instead)",
    }
    assert loop.llm.requests[1]["messages"][-2]["content"] == synthesized.content


async def test_a_result_for_no_open_call_is_dropped_with_a_warning(
    make_loop: Any, caplog: pytest.LogCaptureFixture
) -> None:
    loop = await make_loop([text_reply("Hi."), text_reply("Hello again.")])
    await collect(loop.start([user("hi", "in-1")]))
    stray = result("call_nobody_made", "ok", "res-x")
    with caplog.at_level(logging.WARNING, logger="loopwright.agent"):
        await collect(loop.start([stray, user("hello?", "in-2")]))
    log = await assert_valid(loop)
    assert "res-x" not in [m.id for m in log]
    assert [m.role for m in log] == ["user", "assistant", "user", "assistant"]
    assert any("call_nobody_made" in r.getMessage() for r in caplog.records)


# -- the pure pieces ---------------------------------------------------------------------------


def _asks(id: str, *calls: str) -> Message:
    tool_calls = tuple(ToolCall(id=c, name="end_call") for c in calls)
    return Message(id=id, role="assistant", tool_calls=tool_calls)


def test_open_calls_are_those_of_the_last_reply_with_no_answer() -> None:
    assert open_calls([]) == []
    assert open_calls([user("x", "1")]) == []
    context = [user("x", "1"), _asks("2", "a", "b", "c"), result("b", "r", "3")]
    assert [c.id for c in open_calls(context)] == ["a", "c"]
    assert open_calls([*context, user("y", "4")]) == []
    assert open_calls([_asks("1", "a"), result("a", "r", "2")]) == []


def test_the_answers_a_replay_writes_are_the_same_messages_and_then_none() -> None:
    context = [user("x", "1"), _asks("2", "a")]
    spoke = [user("y", "in")]
    first = turn_inputs(context, spoke, run_id="run-9", now=1.0)
    again = turn_inputs(context, spoke, run_id="run-9", now=2.0)
    assert [m.id for m in first] == [m.id for m in again] == [answer_id("run-9", "a"), "in"]
    # Once stored, a replay of the same turn adds nothing.
    assert turn_inputs([*context, *first], spoke, run_id="run-9", now=3.0) == ()


def test_own_names_win_and_calls_split_by_name() -> None:
    own = client_tool("get_weather")
    offered, clashes = offered_client_tools([own, END_CALL, {"type": "function"}], {"get_weather"})
    assert offered == [END_CALL, {"type": "function"}]
    assert clashes == ["get_weather"]
    calls = [ToolCall(id="1", name="end_call"), ToolCall(id="2", name="get_weather")]
    assert split_calls(calls, {"end_call"}) == ((calls[1],), (calls[0],))
    assert split_calls(calls, ()) == (tuple(calls), ())


# -- a replay after a crash ------------------------------------------------------------------


class ProcessDied(Exception):
    """Stands for the worker process dying."""


class DiesAfterStream(MemoryRunStore):
    """A run store whose process dies at the checkpoint after the first `stream` state."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = True

    async def save(self, record: RunRecord) -> None:
        if self.armed and record.visited[-1:] == ("stream",):
            self.armed = False
            raise ProcessDied
        await super().save(record)


async def test_a_turn_replayed_after_a_crash_stores_its_answers_once(make_loop: Any) -> None:
    script = [tool_calls_reply([end_call()], text="Bye?"), text_reply("Sure."), text_reply("Sure.")]
    loop: Loop = await make_loop(script)
    await collect(loop.start([user("bye", "in-1")], client_tools=CLIENT_TOOLS))
    runs = DiesAfterStream()
    clock, ids = loop.engine.clock, loop.engine.ids
    loop.engine = Engine(store=runs, services={"agent": loop.services}, clock=clock, ids=ids)
    run = loop.start([user("wait", "in-2")], client_tools=CLIENT_TOOLS)
    with pytest.raises(ProcessDied):
        await collect(run)
    await asyncio.gather(*loop.services.input_writes.values())  # its input write had begun
    # Another worker, with nothing in memory, resumes the run from its last checkpoint (the
    # start: rebuild_memory and request are replayed) on the same stores.
    box = PythonToolbox.from_callables([get_weather])
    fresh = AgentServices(store=loop.agents, llm=loop.llm, toolbox_for=lambda _agent: box)
    other = Engine(store=runs, services={"agent": fresh}, clock=clock, ids=ids)
    other.add_workflow(loop.compiled)
    assert (await collect(await other.resume(run.id)))[-1] == RunFinished("final")
    log = await assert_valid(loop)
    assert [m.id for m in log[2:4]] == [answer_id(run.id, "call_end"), "in-2"]
    assert [m.role for m in log] == ["user", "assistant", "tool", "user", "assistant"]
    first, replayed = loop.llm.requests[1:]
    assert replayed["messages"] == first["messages"]  # the model saw the same turn twice
