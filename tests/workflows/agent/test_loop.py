"""The agent loop end to end on in-memory stores and a scripted LLM."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from loopwright.engine.testing.chunks import (
    CallSpec,
    Reset,
    Response,
    Status,
    content_chunk,
    role_chunk,
    text_reply,
    tool_calls_reply,
)
from loopwright.schemas import (
    RunFailed,
    RunFinished,
    StateEntered,
    TextDelta,
    ToolCallStarted,
    ToolResult,
    Usage,
)
from loopwright.workflows import workflow_path
from loopwright.workflows.agent.speech import spoken_text

from .conftest import TOOL_LOG, collect, explode, get_weather


def text_of(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def weather_call(
    call_id: str = "call_1", city: str = "Paris", pre: str | None = "One sec."
) -> CallSpec:
    args: dict[str, Any] = {}
    if pre is not None:
        args["pre_exec_msg"] = pre
    args["city"] = city
    return CallSpec(id=call_id, name="get_weather", arguments=json.dumps(args))


async def test_text_turn_streams_and_stores(make_loop: Any) -> None:
    loop = await make_loop([text_reply("Hello there, Ada.", parts=3)])
    run = loop.turn("hi")
    events = await collect(run)
    assert text_of(events) == "Hello there, Ada."
    assert events[-1] == RunFinished("final")
    assert [e.state for e in events if isinstance(e, StateEntered)] == [
        "rebuild_memory",
        "request",
        "stream",
        "persist",
    ]
    assert Usage(10, 5, 15) in events
    log = await loop.log()
    assert [(m.role, m.content) for m in log] == [
        ("user", "hi"),
        ("assistant", "Hello there, Ada."),
    ]
    body = loop.llm.requests[0]
    assert body["messages"][0]["role"] == "system"
    assert "<human" in body["messages"][0]["content"] and "Ada" in body["messages"][0]["content"]
    assert body["messages"][-1] == {"role": "user", "content": "hi"}
    assert body["stream_options"] == {"include_usage": True}
    params = body["tools"][0]["function"]["parameters"]
    assert next(iter(params["properties"])) == "pre_exec_msg"
    assert "pre_exec_msg" in params["required"]


async def test_tool_turn_speaks_pre_exec_runs_the_tool_and_answers(make_loop: Any) -> None:
    loop = await make_loop(
        [
            tool_calls_reply([weather_call(pre="Let me check.")], fragments=5),
            text_reply("It rains in Paris."),
        ]
    )
    run = loop.turn("weather?")
    events = await collect(run)
    assert events[-1] == RunFinished("final")
    assert text_of(events) == "Let me check. It rains in Paris."
    assert TOOL_LOG == [("get_weather", {"city": "Paris"})]  # pre_exec_msg stripped
    assert (
        ToolCallStarted("call_1", "get_weather", weather_call(pre="Let me check.").arguments)
        in events
    )
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [r.status for r in results] == ["ok"]
    log = await loop.log()
    assert [m.role for m in log] == ["user", "assistant", "tool", "assistant"]
    assert log[2].tool_call_id == "call_1"
    # What the model saw equals what is stored (second request ends with the stored tool result).
    second = loop.llm.requests[1]["messages"]
    assert second[-1] == {"role": "tool", "tool_call_id": "call_1", "content": log[2].content}
    assert second[-2]["tool_calls"][0]["id"] == "call_1"
    # I6: the text the client heard equals the stored assistant text.
    assert spoken_text(log) == text_of(events)


async def test_parallel_calls_each_get_exactly_one_result(make_loop: Any) -> None:
    loop = await make_loop(
        [
            tool_calls_reply([weather_call("call_a", "Paris"), weather_call("call_b", "Oslo")]),
            text_reply("Both done."),
        ]
    )
    events = await collect(loop.turn("two cities"))
    assert events[-1] == RunFinished("final")
    assert sorted(city["city"] for _, city in TOOL_LOG) == ["Oslo", "Paris"]
    log = await loop.log()
    assert [m.tool_call_id for m in log if m.role == "tool"] == ["call_a", "call_b"]


async def test_bad_arguments_unknown_tools_and_exceptions_become_error_results(
    make_loop: Any,
) -> None:
    calls = [
        CallSpec(id="c1", name="get_weather", arguments='{"city": "Par'),
        CallSpec(id="c2", name="no_such_tool", arguments="{}"),
        CallSpec(id="c3", name="explode", arguments='{"reason": "test"}'),
        CallSpec(id="c4", name="get_weather", arguments='{"town": "Rome"}'),
    ]
    loop = await make_loop(
        [tool_calls_reply(calls), text_reply("Sorry.")], tools=(explode, get_weather)
    )
    events = await collect(loop.turn("break things"))
    assert events[-1] == RunFinished("final")
    results = {e.id: e for e in events if isinstance(e, ToolResult)}
    assert {k: r.status for k, r in results.items()} == {
        "c1": "error",
        "c2": "error",
        "c3": "error",
        "c4": "error",
    }
    assert "not valid JSON" in results["c1"].content
    assert "no_such_tool" in results["c2"].content
    assert "exploded: test" in results["c3"].content
    assert "city" in results["c4"].content
    log = await loop.log()
    tool_msgs = [m for m in log if m.role == "tool"]
    assert [m.tool_call_id for m in tool_msgs] == ["c1", "c2", "c3", "c4"]
    assert all(json.loads(m.content or "")["status"] == "error" for m in tool_msgs)


async def test_step_limit_stops_with_its_stop_reason_and_a_valid_log(make_loop: Any) -> None:
    def always_call(body: Any) -> Response:
        n = len(body["messages"])
        return tool_calls_reply([weather_call(f"call_{n}", pre=None)])

    loop = await make_loop(always_call)
    run = loop.turn("loop forever", max_steps=3)
    events = await collect(run)
    assert events[-1] == RunFinished("max_steps")
    assert len(loop.llm.requests) == 3
    log = await loop.log()
    calls = [c.id for m in log for c in m.tool_calls]
    answered = [m.tool_call_id for m in log if m.role == "tool"]
    assert calls == answered and len(calls) == 3


async def test_error_before_output_is_retried(make_loop: Any) -> None:
    loop = await make_loop(
        [
            Response(steps=(Status(status=503, error={"message": "busy"}),)),
            text_reply("Recovered."),
        ]
    )
    events = await collect(loop.turn("hi"))
    assert text_of(events) == "Recovered."
    assert events[-1] == RunFinished("final")


async def test_error_after_output_fails_and_keeps_the_partial_text(make_loop: Any) -> None:
    cut = Response(
        steps=(role_chunk(), content_chunk("Half a "), content_chunk("sentence"), Reset())
    )
    loop = await make_loop([cut])
    run = loop.turn("hi")
    events = await collect(run)
    assert isinstance(events[-1], RunFailed)
    assert run.record.status == "failed"
    log = await loop.log()
    assert [(m.role, m.content, m.incomplete) for m in log] == [
        ("user", "hi", False),
        ("assistant", "Half a sentence", True),
    ]
    assert len(loop.llm.requests) == 1  # no retry once the client heard something


async def test_second_turn_sees_the_first(make_loop: Any) -> None:
    loop = await make_loop([text_reply("One."), text_reply("Two.")])
    await collect(loop.turn("first"))
    await collect(loop.turn("second"))
    messages = loop.llm.requests[1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "One."


MODERATE = """
from typing import Any

from loopwright.engine import Outcome, handler
from loopwright.schemas import TextDelta


@handler(outcomes=["ok"])
async def moderate(ctx: Any) -> Any:
    yield TextDelta(" [moderated]")
    yield Outcome("ok")
"""


async def test_a_state_inserted_by_config_runs(
    make_loop: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    (tmp_path / "my_moderation.py").write_text(MODERATE)
    monkeypatch.syspath_prepend(str(tmp_path))
    copy = tmp_path / "custom.toml"
    shutil.copy(workflow_path(), copy)
    text = copy.read_text()
    text = text.replace('name = "low_latency_agent"', 'name = "moderated_agent"')
    stream_on = 'client_calls = "persist", reply = "persist", failed = "persist" }'
    assert stream_on in text
    text = text.replace(
        stream_on,
        'client_calls = "persist", reply = "moderate", failed = "persist" }\n\n'
        '[states.moderate]\nhandler = "my_moderation:moderate"\non = { ok = "persist" }',
    )
    copy.write_text(text)
    loop = await make_loop([text_reply("Fine.")], workflow=copy)
    run = loop.turn("hi")
    events = await collect(run)
    assert text_of(events) == "Fine. [moderated]"
    assert "moderate" in run.record.visited
    assert events[-1] == RunFinished("final")
