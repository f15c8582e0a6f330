"""What a turn is, as real clients send it: the suffix after the agent's last reply, client
tools, retries answered once, abandoned turns discarded, barge-in and LLM failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from loopwright.engine.testing.chunks import (
    CallSpec,
    Delay,
    Reset,
    Response,
    Status,
    content_chunk,
    finish_chunk,
    role_chunk,
    text_reply,
    tool_calls_reply,
)
from loopwright.workflows.agent.invariants import check_log

from .live import Live, agent, chat_body, live_server, post

SYSTEM = {"role": "system", "content": "You are a helpful voice assistant."}
END_CALL = {
    "type": "function",
    "function": {
        "name": "end_call",
        "description": "Hang up.",
        "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}},
    },
}


async def stored(live: Live, name: str = "ava") -> list[Any]:
    a = await live.app.store.get_agent(name)
    return list(await live.app.store.list_messages(a.id))


def roles(messages: list[Any]) -> list[tuple[str, str | None]]:
    return [(m.role, m.content) for m in messages]


def sent(live: Live, index: int = -1) -> list[dict[str, Any]]:
    """The messages of a request the fake LLM received (system prompt first)."""
    messages: list[dict[str, Any]] = live.llm.requests[index].body["messages"]
    return messages


async def test_a_text_turn_streams_and_stores_once(tmp_path: Path) -> None:
    async with live_server(tmp_path, [text_reply("Hello there.")], agents=[agent()]) as live:
        reply = await post(
            f"{live.base_url}/chat/completions",
            chat_body(
                [SYSTEM, {"role": "user", "content": "hi"}],
                stream_options={"include_usage": True},
            ),
        )
        parsed = reply.stream(include_usage=True)
        assert parsed.text == "Hello there."
        assert parsed.finish_reason == "stop"
        assert roles(await stored(live)) == [("user", "hi"), ("assistant", "Hello there.")]
        # The client's system prompt is the platform's; the agent's own prompt leads.
        assert sent(live)[0]["role"] == "system"
        assert "You are Ava." in sent(live)[0]["content"]


async def test_trailing_system_message_is_an_instruction_not_a_resend(tmp_path: Path) -> None:
    script = [text_reply("Hello there."), text_reply("Goodbye!")]
    async with live_server(tmp_path, script, agents=[agent()]) as live:
        first = [SYSTEM, {"role": "user", "content": "hi"}]
        await post(f"{live.base_url}/chat/completions", chat_body(first))
        follow = [
            *first,
            {"role": "assistant", "content": "Hello there."},
            {"role": "system", "content": "Say goodbye to the user."},
        ]
        parsed = (await post(f"{live.base_url}/chat/completions", chat_body(follow))).stream()
        assert parsed.text == "Goodbye!"
        wire = sent(live)
        assert wire[-1] == {"role": "system", "content": "Say goodbye to the user."}
        assert [m for m in wire if m["role"] == "user"] == [{"role": "user", "content": "hi"}]
        assert roles(await stored(live)) == [
            ("user", "hi"),
            ("assistant", "Hello there."),
            ("system", "Say goodbye to the user."),
            ("assistant", "Goodbye!"),
        ]


async def test_an_empty_history_is_a_greeting(tmp_path: Path) -> None:
    async with live_server(tmp_path, [text_reply("Hi, I'm Ava.")], agents=[agent()]) as live:
        parsed = (await post(f"{live.base_url}/chat/completions", chat_body([SYSTEM]))).stream()
        assert parsed.text == "Hi, I'm Ava."
        assert [m["role"] for m in sent(live)] == ["system"]
        assert roles(await stored(live)) == [("assistant", "Hi, I'm Ava.")]


async def test_an_identical_body_twice_is_answered_once(tmp_path: Path) -> None:
    async with live_server(tmp_path, [text_reply("Paris is sunny.")], agents=[agent()]) as live:
        body = chat_body([SYSTEM, {"role": "user", "content": "weather?"}])
        first = (await post(f"{live.base_url}/chat/completions", body)).stream()
        second = (await post(f"{live.base_url}/chat/completions", body)).stream()
        assert first.text == second.text == "Paris is sunny."
        assert len(live.llm.requests) == 1
        assert roles(await stored(live)) == [("user", "weather?"), ("assistant", "Paris is sunny.")]


async def test_an_identical_greeting_twice_is_answered_once(tmp_path: Path) -> None:
    async with live_server(tmp_path, [text_reply("Hi!")], agents=[agent()]) as live:
        for _ in range(2):
            parsed = (await post(f"{live.base_url}/chat/completions", chat_body([SYSTEM]))).stream()
            assert parsed.text == "Hi!"
        assert len(live.llm.requests) == 1


async def test_a_client_tool_call_is_returned_and_its_result_continues(tmp_path: Path) -> None:
    call = CallSpec(id="call_end", name="end_call", arguments='{"reason": "user is done"}')
    script = [tool_calls_reply([call], text="Okay, goodbye."), text_reply("Call ended.")]
    async with live_server(tmp_path, script, agents=[agent()]) as live:
        first = [SYSTEM, {"role": "user", "content": "bye"}]
        parsed = (
            await post(f"{live.base_url}/chat/completions", chat_body(first, tools=[END_CALL]))
        ).stream()
        assert parsed.finish_reason == "tool_calls"
        assert [(c.id, c.name, c.arguments) for c in parsed.tool_calls] == [
            ("call_end", "end_call", '{"reason": "user is done"}')
        ]
        tool_names = [t["function"]["name"] for t in live.llm.requests[0].body["tools"]]
        assert "end_call" in tool_names
        follow = [
            *first,
            {
                "role": "assistant",
                "content": "Okay, goodbye.",
                "tool_calls": [
                    {
                        "id": "call_end",
                        "type": "function",
                        "function": {"name": "end_call", "arguments": '{"reason": "user is done"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_end", "content": "ended"},
        ]
        parsed = (
            await post(f"{live.base_url}/chat/completions", chat_body(follow, tools=[END_CALL]))
        ).stream()
        assert parsed.text == "Call ended."
        assert sent(live)[-1] == {"role": "tool", "tool_call_id": "call_end", "content": "ended"}
        log = await stored(live)
        assert [m.role for m in log] == ["user", "assistant", "tool", "assistant"]
        context = (await live.app.store.load_context("agent-ava")).messages
        assert not check_log(log, context)


async def test_a_pending_client_call_without_result_is_answered_with_an_error(
    tmp_path: Path,
) -> None:
    call = CallSpec(id="call_x", name="end_call", arguments="{}")
    script = [tool_calls_reply([call]), text_reply("Sure, go on.")]
    async with live_server(tmp_path, script, agents=[agent()]) as live:
        first = [SYSTEM, {"role": "user", "content": "bye"}]
        await post(f"{live.base_url}/chat/completions", chat_body(first, tools=[END_CALL]))
        follow = [
            *first,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_x",
                        "type": "function",
                        "function": {"name": "end_call", "arguments": "{}"},
                    }
                ],
            },
            {"role": "user", "content": "wait, one more thing"},
        ]
        parsed = (
            await post(f"{live.base_url}/chat/completions", chat_body(follow, tools=[END_CALL]))
        ).stream()
        assert parsed.text == "Sure, go on."
        log = await stored(live)
        assert [m.role for m in log] == ["user", "assistant", "tool", "user", "assistant"]
        assert log[2].tool_call_id == "call_x"
        assert "error" in (log[2].content or "")
        context = (await live.app.store.load_context("agent-ava")).messages
        assert not check_log(log, context)


async def _open_stream(url: str, body: dict[str, Any]) -> tuple[aiohttp.ClientSession, Any]:
    session = aiohttp.ClientSession()
    response = await session.post(
        url, data=orjson.dumps(body), headers={"content-type": "application/json"}
    )
    return session, response


async def _until(predicate: Any, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not await predicate():  # noqa: ASYNC110 (polls the store)
            await asyncio.sleep(0.01)


async def test_a_turn_abandoned_before_its_first_token_leaves_no_message(tmp_path: Path) -> None:
    slow = Response(steps=(Delay(5.0), role_chunk(), content_chunk("late"), finish_chunk("stop")))
    script = [slow, text_reply("Got it: two things.")]
    async with live_server(tmp_path, script, agents=[agent()]) as live:
        url = f"{live.base_url}/chat/completions"
        session, response = await _open_stream(
            url, chat_body([SYSTEM, {"role": "user", "content": "I need"}])
        )
        await response.content.readline()  # the role chunk: headers and first bytes are out
        await _until(lambda: _has_requests(live, 1))
        response.close()
        await session.close()

        async def discarded() -> bool:
            runs = await live.app.store.list_runs(key="agent-ava")
            return bool(runs) and runs[0].status == "cancelled" and not await stored(live)

        await _until(discarded)
        longer = chat_body([SYSTEM, {"role": "user", "content": "I need two things"}])
        parsed = (await post(url, longer)).stream()
        assert parsed.text == "Got it: two things."
        assert roles(await stored(live)) == [
            ("user", "I need two things"),
            ("assistant", "Got it: two things."),
        ]


async def _has_requests(live: Live, n: int) -> bool:
    return len(live.llm.requests) >= n


async def test_barge_in_mid_stream_keeps_what_was_heard(tmp_path: Path) -> None:
    slow = Response(
        steps=(
            role_chunk(),
            content_chunk("The weather "),
            Delay(5.0),
            content_chunk("is fine."),
            finish_chunk("stop"),
        )
    )
    script = [slow, text_reply("Yes?")]
    async with live_server(tmp_path, script, agents=[agent()]) as live:
        url = f"{live.base_url}/chat/completions"
        first = [SYSTEM, {"role": "user", "content": "weather?"}]
        session, response = await _open_stream(url, chat_body(first))
        seen = b""
        while b"The weather" not in seen:
            seen += await response.content.readline()
        response.close()
        await session.close()

        async def cancelled() -> bool:
            runs = await live.app.store.list_runs(key="agent-ava")
            return bool(runs) and runs[0].status == "cancelled"

        await _until(cancelled)
        runs = await live.app.store.list_runs(key="agent-ava")
        assert runs[0].stop_reason == "cancelled"
        log = await stored(live)
        assert roles(log) == [("user", "weather?"), ("assistant", "The weather ")]
        assert log[1].incomplete
        follow = [
            *first,
            {"role": "assistant", "content": "The weather"},
            {"role": "user", "content": "actually, never mind"},
        ]
        parsed = (await post(url, chat_body(follow))).stream()
        assert parsed.text == "Yes?"
        assert [m.role for m in await stored(live)] == ["user", "assistant", "user", "assistant"]


async def test_an_llm_error_before_the_first_token_is_an_error_frame(tmp_path: Path) -> None:
    failing = [Response(steps=(Status(status=400, error={"message": "bad model"}),))]
    async with live_server(tmp_path, failing, agents=[agent()]) as live:
        reply = await post(
            f"{live.base_url}/chat/completions",
            chat_body([SYSTEM, {"role": "user", "content": "hi"}]),
        )
        parsed = reply.stream()
        assert parsed.error is not None
        assert parsed.text == ""


async def test_an_llm_error_after_the_first_token_keeps_the_partial_text(tmp_path: Path) -> None:
    cut = Response(steps=(role_chunk(), content_chunk("Half a"), Reset()), done=False)
    async with live_server(tmp_path, [cut], agents=[agent()]) as live:
        reply = await post(
            f"{live.base_url}/chat/completions",
            chat_body([SYSTEM, {"role": "user", "content": "hi"}]),
        )
        parsed = reply.stream()
        assert parsed.text == "Half a"
        assert parsed.error is not None
        log = await stored(live)
        assert roles(log) == [("user", "hi"), ("assistant", "Half a")]
        assert log[1].incomplete


async def test_an_unknown_model_is_a_404_before_the_headers(tmp_path: Path) -> None:
    async with live_server(tmp_path, [], agents=[agent()]) as live:
        reply = await post(
            f"{live.base_url}/chat/completions",
            chat_body([{"role": "user", "content": "hi"}], model="nobody"),
        )
        assert reply.status == 404
        assert reply.json()["error"]["code"] == "model_not_found"


async def test_a_template_makes_one_agent_per_session(tmp_path: Path) -> None:
    script = [text_reply("One."), text_reply("Two."), text_reply("Three.")]
    async with live_server(tmp_path, script, agents=[agent("tmpl", is_template=True)]) as live:
        url = f"{live.base_url}/chat/completions"
        for session, text in (("s1", "hi"), ("s2", "hello"), ("s1", "hi again")):
            body = chat_body([SYSTEM, {"role": "user", "content": text}], model="tmpl")
            reply = await post(url, body, headers={"X-LiveKit-Session-ID": session})
            reply.stream()
        names = sorted(a.name for a in await live.app.store.list_agents())
        assert len(names) == 3  # the template and two session agents
        assert names[0] == "tmpl"


async def test_pings_keep_an_idle_stream_alive_before_the_first_token(tmp_path: Path) -> None:
    from loopwright.adapters.http.chat import ServerOptions

    slow = Response(
        steps=(Delay(0.5), role_chunk(), content_chunk("Finally."), finish_chunk("stop"))
    )
    options = ServerOptions(ping_s=0.1)
    async with live_server(tmp_path, [slow], agents=[agent()], options=options) as live:
        reply = await post(f"{live.base_url}/chat/completions", chat_body([SYSTEM]))
        parsed = reply.stream()
        assert parsed.text == "Finally."
        assert parsed.pings >= 2


async def test_the_lag_probe_answers_when_enabled(tmp_path: Path) -> None:
    from .live import request

    async with live_server(tmp_path, [], lag_probe=True) as live:
        await asyncio.sleep(0.05)
        reading = (await request("GET", f"{live.root}/_lag")).json()
        assert reading["samples"] >= 1
        assert reading["p99_ms"] >= 0
    async with live_server(tmp_path, []) as live:
        assert (await request("GET", f"{live.root}/_lag")).status == 404
