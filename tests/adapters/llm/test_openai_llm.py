"""OpenAILLM over the fake server: parity with the scripted LLM, SDK configuration (headers,
Azure), early close, `complete()`, the demo responder and the models endpoint."""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopwright.adapters.llm.fake_server import FakeOpenAIServer, demo_responder, replay
from loopwright.adapters.llm.openai_llm import OpenAILLM, Transport
from loopwright.engine.testing.chunks import (
    CallSpec,
    Delay,
    Response,
    content_chunk,
    role_chunk,
    text_reply,
    tool_calls_reply,
)
from loopwright.engine.testing.scripted_llm import ScriptedLLM
from loopwright.workflows.agent.fold import StreamFold

from .conftest import collect, open_llm

TRANSPORTS: list[Transport] = ["aiohttp", "sdk"]
CALLS = [
    CallSpec(id="call_a", name="lookup", arguments='{"pre_exec_msg": "One sec", "q": "x"}'),
    CallSpec(id="call_b", name="weather", arguments='{"city": "Oslo"}'),
]
SCRIPT = [
    text_reply("Hello there, how are you?", parts=5),
    tool_calls_reply(CALLS, text="Let me check.", fragments=4),
    replay(
        b'data: {"id":"r","choices":[{"index":0,"delta":{"content":"raw"}}]}\n\ndata: [DONE]\n\n'
    ),
]
BODY = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}


async def test_scripted_llm_and_fake_server_yield_the_same_chunks() -> None:
    scripted = ScriptedLLM(SCRIPT)
    expected = [(await collect(scripted, BODY))[0] for _ in SCRIPT]
    assert [len(chunks) for chunks in expected] == [8, 16, 1]
    for transport in TRANSPORTS:
        async with open_llm(transport, SCRIPT) as llm:
            assert [(await collect(llm, BODY))[0] for _ in SCRIPT] == expected
    assert scripted.requests == [BODY] * 3


_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)


@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_text, st.integers(1, 6), st.sampled_from(TRANSPORTS))
async def test_any_text_survives_the_wire(text: str, parts: int, transport: Transport) -> None:
    script = [text_reply(text, parts=parts)]
    async with open_llm(transport, script) as llm:
        chunks, error = await collect(llm, BODY)
    fold = StreamFold()
    for chunk in chunks:
        fold.add(chunk)
    assert error is None
    assert fold.result().text == text


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_complete_matches_the_scripted_llm(transport: Transport) -> None:
    script = [text_reply("Hi there.", parts=3), tool_calls_reply(CALLS)]
    scripted = ScriptedLLM(script)
    async with open_llm(transport, script) as llm:
        for _ in script:
            got = await llm.complete({**BODY, "stream": True})
            assert got == await scripted.complete(BODY)
    assert got["choices"][0]["message"]["tool_calls"][1]["function"]["arguments"] == (
        '{"city": "Oslo"}'
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_early_close_aborts_the_upstream_request(transport: Transport) -> None:
    steps: list[Any] = [role_chunk()]
    for n in range(200):
        steps += [content_chunk(f"{n} "), Delay(0.005)]
    script = [Response(steps=tuple(steps)), text_reply("again")]
    async with FakeOpenAIServer(script) as server:
        llm = OpenAILLM(base_url=server.base_url, api_key="k", transport=transport)
        try:
            async with aclosing(llm.stream(BODY)) as stream:
                async for chunk in stream:
                    if chunk["choices"][0]["delta"].get("content") == "2 ":
                        break
            await server.wait_disconnect(2.0)
            assert server.disconnects == 1
            chunks, error = await collect(llm, BODY)  # the adapter is still usable
            assert error is None
            assert len(chunks) == 7  # role, 4 deltas, finish, usage
        finally:
            await llm.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sdk_configuration_reaches_the_wire(transport: Transport) -> None:
    async with FakeOpenAIServer() as server:
        client = openai.AsyncOpenAI(
            base_url=server.base_url, api_key="sk-1", default_headers={"X-Custom": "yes"}
        )
        llm = OpenAILLM(client=client, transport=transport)
        await collect(llm, {**BODY, "stream_options": {"include_obfuscation": False}})
        await llm.aclose()
        assert not client.is_closed()  # a client passed in belongs to the caller
        await client.close()
        (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-1"
    assert request.headers["x-custom"] == "yes"
    assert request.headers["user-agent"].startswith("AsyncOpenAI/Python")
    assert request.headers["x-stainless-retry-count"] == "0"
    assert request.body["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert request.body["messages"] == BODY["messages"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_azure_deployment_path_api_version_and_api_key(transport: Transport) -> None:
    async with FakeOpenAIServer() as server:
        endpoint = server.base_url.removesuffix("/v1")
        client = openai.AsyncAzureOpenAI(
            azure_endpoint=endpoint, api_key="az-key", api_version="2024-10-21"
        )
        llm = OpenAILLM(client=client, transport=transport)
        chunks, error = await collect(llm, {**BODY, "model": "my-deployment"})
        await llm.aclose()
        await client.close()
        (request,) = server.requests
    assert error is None
    assert chunks
    assert request.path == "/openai/deployments/my-deployment/chat/completions"
    assert request.query == {"api-version": "2024-10-21"}
    assert request.headers["api-key"] == "az-key"
    assert "authorization" not in request.headers


def test_client_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    llm = OpenAILLM()
    assert str(llm.client.base_url) == "http://127.0.0.1:9/v1/"
    assert llm.client.api_key == "sk-env"
    assert llm.client.max_retries == 0


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "units": {"type": "string", "enum": ["c", "f"]},
                "days": {"type": ["integer", "null"]},
                "query": {"type": "string"},
                "pre_exec_msg": {"type": "string"},
            },
            "required": ["city", "units", "days", "query", "pre_exec_msg"],
        },
    },
}


async def test_demo_responder_calls_the_first_tool_then_replies() -> None:
    async with FakeOpenAIServer() as server:
        llm = OpenAILLM(base_url=server.base_url, api_key="k")
        ask = {
            "model": "demo",
            "messages": [{"role": "user", "content": "Rain in Oslo?"}],
            "tools": [WEATHER_TOOL],
        }
        chunks, _ = await collect(llm, ask)
        fold = StreamFold()
        for chunk in chunks:
            fold.add(chunk)
        (call,) = fold.result().tool_calls
        args = json.loads(call.arguments)
        assert call.name == "get_weather"
        assert next(iter(args)) == "pre_exec_msg"
        assert args == {
            "pre_exec_msg": "One moment, let me check that.",
            "city": "Oslo",
            "units": "c",
            "days": 1,
            "query": "Rain in Oslo?",
        }
        assert len(fold.started) + len(chunks) > 4  # arguments came in fragments
        assert fold.result().usage is not None  # the adapter always asks for usage
        answer = {
            **ask,
            "messages": [
                *ask["messages"],
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": call.id, "content": "rainy, 8C"},
            ],
        }
        chunks, _ = await collect(llm, answer)
        again, _ = await collect(llm, answer)
        await llm.aclose()
    texts = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert "".join(t or "" for t in texts) == "Done. The tool said: rainy, 8C"
    assert len([t for t in texts if t]) >= 2
    assert again == chunks  # deterministic


def test_demo_responder_usage_only_when_asked() -> None:
    body = {"model": "demo", "messages": [{"role": "user", "content": "hello"}]}
    plain = demo_responder(body).steps
    assert not any(s.get("usage") for s in plain if isinstance(s, dict))
    asked = demo_responder({**body, "stream_options": {"include_usage": True}}).steps
    assert any(s.get("usage") for s in asked if isinstance(s, dict))


async def test_models_endpoint() -> None:
    async with FakeOpenAIServer(models=["a", "b"]) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="k")
        page = await client.models.list()
        await client.close()
    assert [m.id for m in page.data] == ["a", "b"]
