"""The two bare reference relays: OpenAI-compatible streaming proxies that store nothing.

Run: `PYTHONPATH=benchmarks python -m capacity.relays --kind sdk|aiohttp --port P --llm URL`;
it serves until stdin closes or SIGTERM.

Each is a bare ASGI app (no framework) served by uvicorn with uvloop and httptools, the stack
`loopwright serve` uses; `POST .../chat/completions` forwards the body to the LLM and
streams every chunk back, re-encoded; `GET /_lag` returns the event-loop lag since the last
read (`{"p99_ms", "max_ms", "samples"}`, see lag.py).

- `sdk`: the openai SDK's typed stream, `AsyncOpenAI.chat.completions.create(stream=True)`
  (its default httpx2 transport, with a pool large enough for every stream), each chunk
  re-encoded with `chunk.model_dump_json()`.
- `aiohttp`: one aiohttp `ClientSession`, the body split into SSE lines, each `data:` line
  parsed with orjson and re-encoded with orjson.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import httpx2
import openai
import orjson
import uvicorn

from capacity.lag import LagProbe

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
DONE = b"data: [DONE]\n\n"


class RelayApp:
    """An ASGI app: lifespan opens the upstream client and the lag probe."""

    def __init__(self, kind: str, llm_url: str) -> None:
        self._kind, self._llm_url = kind, llm_url.rstrip("/")
        self._probe = LagProbe()
        self._sdk: openai.AsyncOpenAI | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] != "http":
            return
        elif scope["path"] == "/_lag":
            await _send_json(send, 200, self._probe.read())
        elif scope["method"] == "POST" and scope["path"].endswith("/chat/completions"):
            await self._chat(receive, send)
        else:
            await _send_json(send, 404, {"error": {"message": "no such route"}})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _open(self) -> None:
        self._probe.start()
        if self._kind == "sdk":
            # The SDK's default pool stops at 1,000 connections; the steps go to 2,000.
            limits = httpx2.Limits(max_connections=None, max_keepalive_connections=4096)
            http = openai.DefaultAsyncHttpxClient(limits=limits)
            self._sdk = openai.AsyncOpenAI(
                base_url=self._llm_url, api_key="x", max_retries=0, http_client=http
            )
        else:
            connector = aiohttp.TCPConnector(limit=0)
            self._session = aiohttp.ClientSession(connector=connector)

    async def _close(self) -> None:
        await self._probe.stop()
        if self._sdk is not None:
            await self._sdk.close()
        if self._session is not None:
            await self._session.close()

    async def _chat(self, receive: Receive, send: Send) -> None:
        raw = await _read_body(receive)
        body = orjson.loads(raw)
        frames = self._via_sdk(body) if self._kind == "sdk" else self._via_aiohttp(raw)
        started = False
        try:
            async for frame in frames:
                if not started:
                    await send(
                        {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS}
                    )
                    started = True
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        except Exception as err:  # the upstream failed: say so the way OpenAI clients read it
            if not started:
                await _send_json(send, 502, {"error": {"message": str(err)}})
                return
            error = orjson.dumps({"error": {"message": str(err), "type": "server_error"}})
            await send({"type": "http.response.body", "body": b"data: " + error + b"\n\n" + DONE})
            return
        await send({"type": "http.response.body", "body": DONE})

    async def _via_sdk(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        assert self._sdk is not None
        stream = await self._sdk.chat.completions.create(
            model=body["model"],
            messages=body["messages"],
            stream=True,
            stream_options=body.get("stream_options") or openai.omit,
        )
        async with stream:
            async for chunk in stream:
                yield b"data: " + chunk.model_dump_json().encode() + b"\n\n"

    async def _via_aiohttp(self, raw: bytes) -> AsyncIterator[bytes]:
        assert self._session is not None
        url = f"{self._llm_url}/chat/completions"
        headers = {"content-type": "application/json", "authorization": "Bearer x"}
        async with self._session.post(url, data=raw, headers=headers) as response:
            response.raise_for_status()
            rest = b""
            async for data in response.content.iter_any():
                *lines, rest = (rest + data).split(b"\n")
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        return
                    yield b"data: " + orjson.dumps(orjson.loads(payload)) + b"\n\n"


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _send_json(send: Send, status: int, payload: Any) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": orjson.dumps(payload)})


def _exit_with_parent() -> None:
    """Stop when stdin closes: the benchmark died without stopping us."""
    sys.stdin.read()
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("sdk", "aiohttp"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--llm", required=True, help="the LLM's base URL, ending in /v1")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "x")
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    uvicorn.run(
        RelayApp(args.kind, args.llm),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
