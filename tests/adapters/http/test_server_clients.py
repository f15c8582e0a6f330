"""Real clients against a live server: the `openai` SDK (sync and async, streamed and not),
the Node.js SDK, `curl -N`, and every real request body of the corpus posted as is."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import openai
import pytest

from loopwright.engine.testing.chunks import CallSpec, text_reply, tool_calls_reply
from tests.node_client import require_node, run_node_client

from .lint import lint_stream
from .live import agent, chat_body, live_server, post, request

REQUESTS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus" / "client-requests"
USER = [{"role": "user", "content": "hi"}]


async def test_routes_accept_every_path_real_clients_use(tmp_path: Path) -> None:
    script = [text_reply("one"), text_reply("two"), text_reply("three")]
    async with live_server(tmp_path, script, agents=[agent()]) as live:
        paths = [
            "/v1/chat/completions",
            "/chat/completions",
            "/v1/chat/completions/chat/completions",
        ]
        for n, path in enumerate(paths):
            body = chat_body([{"role": "user", "content": f"turn {n}"}])
            reply = await post(live.root + path, body, headers={"accept": "application/json"})
            assert reply.headers["content-type"].startswith("text/event-stream"), reply.headers
            reply.stream()
        for path in ("/v1/models", "/v1/chat/completions/models"):
            models = (await request("GET", live.root + path)).json()
            assert models["object"] == "list"
            assert [(m["id"], m["object"]) for m in models["data"]] == [("ava", "model")]
        assert (await request("GET", live.root + "/healthz")).json() == {"status": "ok"}


async def test_stream_absent_means_a_chat_completion(tmp_path: Path) -> None:
    async with live_server(tmp_path, [text_reply("Plain.")], agents=[agent()]) as live:
        reply = await post(f"{live.base_url}/chat/completions", {"model": "ava", "messages": USER})
        body = reply.json()
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == "Plain."
        assert body["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"", None),
        (b"not json", None),
        (b"[]", None),
        (b'{"messages": []}', "model"),
        (b'{"model": 3, "messages": []}', "model"),
        (b'{"model": "ava"}', "messages"),
        (b'{"model": "ava", "messages": {}}', "messages"),
        (b'{"model": "ava", "messages": [{"content": "x"}]}', "messages[0].role"),
        (b'{"model": "ava", "messages": [{"role": "wizard", "content": "x"}]}', "messages[0].role"),
        (b'{"model": "ava", "messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
    ],
)
async def test_malformed_bodies_get_an_openai_shaped_400(
    tmp_path: Path, raw: bytes, param: str | None
) -> None:
    async with live_server(tmp_path, [], agents=[agent()]) as live:
        reply = await post(f"{live.base_url}/chat/completions", None, raw=raw)
        assert reply.status == 400, reply.body
        error = reply.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["message"]
        if param is not None:
            assert error["param"] == param


async def test_an_oversized_turn_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    from loopwright.adapters.http.chat import ServerOptions

    async with live_server(
        tmp_path, [], agents=[agent()], options=ServerOptions(max_input_chars=100)
    ) as live:
        body = chat_body([{"role": "user", "content": "x" * 101}])
        reply = await post(f"{live.base_url}/chat/completions", body)
        assert reply.status == 400
        assert reply.json()["error"]["code"] == "input_too_large"
        assert not await live.app.store.list_messages("agent-ava")


def _corpus_route(name: str) -> str:
    return (
        "/v1/chat/completions/chat/completions"
        if "doubled-path" in name
        else "/v1/chat/completions"
    )


async def test_every_corpus_body_is_accepted_as_sent(tmp_path: Path) -> None:
    files = sorted(p for p in REQUESTS.glob("*.json") if "request-headers" not in p.name)
    assert len(files) >= 9
    models = {json.loads(p.read_bytes())["model"] for p in files}
    agents = [agent(m) for m in sorted(models)]
    async with live_server(tmp_path, None, agents=agents) as live:  # the demo model answers
        for path in files:
            raw = path.read_bytes()
            body = json.loads(raw)
            reply = await post(live.root + _corpus_route(path.name), None, raw=raw)
            assert reply.status == 200, (path.name, reply.body[:300])
            if body.get("stream"):
                include = bool((body.get("stream_options") or {}).get("include_usage"))
                parsed = lint_stream(reply.body, include_usage=include)
                assert parsed.error is None, (path.name, parsed.error)
                assert parsed.text or parsed.tool_calls, path.name
            else:
                assert reply.json()["object"] == "chat.completion", path.name


async def test_the_python_sdk_async_streamed_helper_and_plain(tmp_path: Path) -> None:
    script = [text_reply("First."), text_reply("Second."), text_reply("Third.")]
    async with live_server(tmp_path, script, agents=[agent()]) as live:
        client = openai.AsyncOpenAI(base_url=live.base_url, api_key="x", max_retries=0)
        async with client:
            stream = await client.chat.completions.create(
                model="ava",
                messages=[{"role": "user", "content": "one"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text == "First."
            async with client.chat.completions.stream(
                model="ava",
                messages=[
                    {"role": "user", "content": "one"},
                    {"role": "assistant", "content": "First."},
                    {"role": "user", "content": "two"},
                ],
            ) as helper:
                async for _ in helper:
                    pass
                final = await helper.get_final_completion()
            assert final.choices[0].message.content == "Second."
            done = await client.chat.completions.create(
                model="ava",
                messages=[
                    {"role": "user", "content": "one"},
                    {"role": "assistant", "content": "First."},
                    {"role": "user", "content": "two"},
                    {"role": "assistant", "content": "Second."},
                    {"role": "user", "content": "three"},
                ],
            )
            assert done.choices[0].message.content == "Third."


async def test_the_python_sdk_sync_client(tmp_path: Path) -> None:
    async with live_server(tmp_path, [text_reply("Sync works.")], agents=[agent()]) as live:

        def call() -> str:
            with openai.OpenAI(base_url=live.base_url, api_key="x", max_retries=0) as client:
                stream = client.chat.completions.create(model="ava", messages=USER, stream=True)
                return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        assert await asyncio.to_thread(call) == "Sync works."


async def test_the_python_sdk_sees_a_mid_stream_error(tmp_path: Path) -> None:
    from loopwright.engine.testing.chunks import Reset, Response, content_chunk, role_chunk

    cut = Response(steps=(role_chunk(), content_chunk("Half"), Reset()), done=False)
    async with live_server(tmp_path, [cut], agents=[agent()]) as live:
        client = openai.AsyncOpenAI(base_url=live.base_url, api_key="x", max_retries=0)
        async with client:
            stream = await client.chat.completions.create(model="ava", messages=USER, stream=True)
            got: list[str] = []

            async def read() -> None:
                async for chunk in stream:
                    got.append(chunk.choices[0].delta.content or "" if chunk.choices else "")

            with pytest.raises(openai.APIError):
                await read()
            assert "".join(got) == "Half"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_streams(tmp_path: Path) -> None:
    async with live_server(tmp_path, [text_reply("Curl too.")], agents=[agent()]) as live:
        proc = await asyncio.create_subprocess_exec(
            "curl",
            "-sN",
            f"{live.base_url}/chat/completions",
            "-H",
            "content-type: application/json",
            "-d",
            json.dumps(chat_body(USER)),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        assert lint_stream(out, include_usage=False).text == "Curl too."


async def test_the_node_sdk_text_turn(tmp_path: Path) -> None:
    require_node()
    async with live_server(tmp_path, [text_reply("From Node.")], agents=[agent()]) as live:
        result: dict[str, Any] = await run_node_client(
            live.base_url, "ava", "stream", body={"messages": USER}
        )
        assert result["error"] is None, result["error"]
        assert result["text"] == "From Node."
        assert result["final"]["choices"][0]["message"]["content"] == "From Node."


async def test_the_node_sdk_two_parallel_client_tool_calls(tmp_path: Path) -> None:
    require_node()
    calls = [
        CallSpec(id="call_a", name="end_call", arguments='{"reason": "a"}'),
        CallSpec(id="call_b", name="transfer_call", arguments='{"to": "sales"}'),
    ]
    tools = [
        {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
        for name in ("end_call", "transfer_call")
    ]
    async with live_server(tmp_path, [tool_calls_reply(calls)], agents=[agent()]) as live:
        result = await run_node_client(
            live.base_url, "ava", "stream", body={"messages": USER, "tools": tools}
        )
        assert result["error"] is None, result["error"]
        final_calls = result["final"]["choices"][0]["message"]["tool_calls"]
        assert [
            (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in final_calls
        ] == [
            ("call_a", "end_call", '{"reason": "a"}'),
            ("call_b", "transfer_call", '{"to": "sales"}'),
        ]
        assert result["final"]["choices"][0]["finish_reason"] == "tool_calls"
