"""The Node.js `openai` SDK harness (tests/node_client.py) against the fake OpenAI server.

Proves the harness before it is pointed at loopwright's own server: what the Node SDK gets in
each mode, two parallel tool calls through `.stream()` + `finalChatCompletion()`, and SDK
errors (a mid-stream error frame, an HTTP status, a hang) reported as results, not crashes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from loopwright.adapters.llm.fake_server import FakeOpenAIServer
from loopwright.engine.testing.chunks import (
    CallSpec,
    Response,
    Script,
    Status,
    content_chunk,
    error_chunk,
    role_chunk,
    split_text,
    text_reply,
    tool_calls_reply,
)
from tests.node_client import NodeClientError, require_node, run_node_client

MODES = ["stream", "create_stream", "complete"]
STREAMED = ["stream", "create_stream"]
TEXT = "Hello there, Ada. How can I help?"
CALLS = [
    CallSpec(id="call_weather_1", name="get_weather", arguments='{"city": "Paris", "days": 3}'),
    CallSpec(id="call_time_2", name="get_time", arguments='{"timezone": "Europe/Paris"}'),
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": call.name,
            "parameters": {"type": "object", "properties": {}, "additionalProperties": True},
        },
    }
    for call in CALLS
]


async def one_turn(
    script: Script, mode: str, **kwargs: Any
) -> tuple[dict[str, Any], FakeOpenAIServer]:
    """One Node client run against a fresh fake server playing `script`."""
    require_node()
    async with FakeOpenAIServer(script, hang_limit=10.0) as server:
        result = await run_node_client(server.base_url, "scripted", mode, **kwargs)
    return result, server


@pytest.mark.parametrize("mode", MODES)
async def test_text_turn(mode: str) -> None:
    result, server = await one_turn([text_reply(TEXT, parts=5)], mode)

    assert result["error"] is None
    assert result["text"] == TEXT
    assert result["finish_reason"] == "stop"
    assert result["tool_calls"] == []
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer test"
    assert request.body["stream"] is (mode in STREAMED)
    if mode in STREAMED:
        # role, five deltas, the finish chunk, the usage chunk: every chunk, raw
        deltas = [c["choices"][0]["delta"].get("content") for c in result["chunks"][1:6]]
        assert deltas == split_text(TEXT, 5)
        assert len(result["chunks"]) == 8
        assert result["chunks"][-1]["choices"] == []
    else:
        assert result["chunks"] == []
    if mode == "create_stream":
        assert result["final"] is None
    else:
        assert result["final"]["choices"][0]["message"]["content"] == TEXT
        assert result["final"]["usage"]["total_tokens"] == 15


@pytest.mark.parametrize("mode", MODES)
async def test_two_parallel_tool_calls(mode: str) -> None:
    script = [tool_calls_reply(CALLS, fragments=4)]
    body = {
        "messages": [{"role": "user", "content": "Weather and time in Paris?"}],
        "tools": TOOLS,
        "stream_options": {"include_usage": True} if mode in STREAMED else None,
    }
    result, server = await one_turn(script, mode, body={k: v for k, v in body.items() if v})

    assert result["error"] is None
    assert result["finish_reason"] == "tool_calls"
    expected = [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in CALLS
    ]
    assert result["tool_calls"] == expected
    assert [json.loads(c["function"]["arguments"]) for c in result["tool_calls"]] == [
        {"city": "Paris", "days": 3},
        {"timezone": "Europe/Paris"},
    ]
    if mode != "create_stream":
        message = result["final"]["choices"][0]["message"]
        assert message["tool_calls"] == expected
        assert result["final"]["choices"][0]["finish_reason"] == "tool_calls"
    assert server.requests[0].body["tools"] == TOOLS


def half_then_error() -> Response:
    # The frame both SDKs report with its message: `data: {"error": {...}}` after some text.
    steps = (role_chunk(), content_chunk("Half a "), error_chunk("the model crashed", code="E42"))
    return Response(steps=steps)


@pytest.mark.parametrize("mode", STREAMED)
async def test_mid_stream_error_frame_is_reported(mode: str) -> None:
    result, _ = await one_turn([half_then_error()], mode)

    assert result["text"] == "Half a "
    assert result["final"] is None
    assert result["error"] == {
        "name": "APIError",
        "message": "the model crashed",
        "status": None,
        "code": "E42",
        "type": None,
    }


async def test_http_status_is_reported() -> None:
    status = Status(status=429, error={"message": "slow down", "type": "rate_limit"})
    result, server = await one_turn([Response(steps=(status,))], "stream")

    assert result["error"]["name"] == "RateLimitError"
    assert result["error"]["status"] == 429
    assert "slow down" in result["error"]["message"]
    assert len(server.requests) == 1  # the harness never retries behind the test's back


async def test_body_and_headers_reach_the_server() -> None:
    body = {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "metadata": {"call": "abc"},
        "user": "caller-7",
        "stream_options": {"include_usage": True},
    }
    headers = {"X-LiveKit-Session-ID": "room-1"}
    _, server = await one_turn([text_reply("Hi!")], "stream", body=body, headers=headers)

    (request,) = server.requests
    assert request.body == {**body, "model": "scripted", "stream": True}
    assert request.headers["x-livekit-session-id"] == "room-1"
    # A fact the server must live with: the SDK asks for JSON even when streaming.
    assert request.headers["accept"] == "application/json"


async def test_a_harness_bug_raises() -> None:
    require_node()
    with pytest.raises(NodeClientError, match="exited with 1") as caught:
        await run_node_client("http://127.0.0.1:9/v1", "scripted", "no-such-mode")
    assert "usage: node client.mjs" in caught.value.stderr


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_missing_node_fails_on_ci_and_skips_locally(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="npm ci --prefix tests/node"):
        require_node()
