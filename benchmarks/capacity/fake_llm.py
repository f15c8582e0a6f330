"""The fake LLM for the capacity benchmark: an OpenAI-compatible stream at a model's pace.

Run: `PYTHONPATH=benchmarks python -m capacity.fake_llm [--port 0] [--chunks 20] [--interval 0.05]`;
the base URL (`http://127.0.0.1:PORT/v1`) is the first line on stdout; it serves until
stdin closes.

Every streamed `POST .../chat/completions` gets the role chunk and the first content chunk at
once, the other content chunks `--interval` apart, then the finish chunk, the usage chunk and
`data: [DONE]`: the chunks of `loopwright.engine.testing.chunks.text_reply`, with the fields
and size of a real gpt-4o-mini chunk. A non-streamed request gets the same reply as one
`chat.completion`. `GET .../models` lists one model.

Why not `FakeOpenAIServer`: at 2,000 streams it must write 46,000 chunks a second on the
core it shares with the clients, and its per-chunk path (a task woken by `asyncio.sleep`,
`json.dumps` and aiohttp's `StreamResponse.write` per chunk) costs several times what this
one does (a bare protocol on uvloop, chunks encoded once, one timer callback per chunk), so
it would saturate that core and show up as the relays' latency.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, cast

import httptools
import orjson
import uvloop

from loopwright.engine.testing.chunks import completion_from_chunks, text_reply

META = {  # the size and fields of a real gpt-4o-mini chunk
    "id": "chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc",
    "model": "gpt-4o-mini-2024-07-18",
    "service_tier": "default",
    "system_fingerprint": "fp_d0469e1700",
    "usage": None,
    "obfuscation": "auU6fTns",
}
WORDS = "Sure, here is a short answer spoken back to you in twenty small pieces, one by one."
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _sse(chunk: dict[str, Any]) -> bytes:
    return _chunked(b"data: " + orjson.dumps(chunk) + b"\n\n")


def _json_response(status: str, payload: Any) -> bytes:
    body = orjson.dumps(payload)
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


class Script:
    """The wire bytes of one turn, encoded once: head, paced chunks, tail."""

    def __init__(self, chunks: int, interval: float) -> None:
        reply = text_reply(WORDS, parts=chunks, usage_tokens=(42, chunks), meta=META)
        frames = [s for s in reply.steps if isinstance(s, dict)]
        role, content, tail = frames[0], frames[1 : 1 + chunks], frames[1 + chunks :]
        self.interval = interval
        self.first = STREAM_HEAD + _sse(role) + _sse(content[0])
        self.paced = [_sse(c) for c in content[1:]]
        self.last = b"".join(_sse(c) for c in tail) + _chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n"
        self.completion = _json_response("200 OK", completion_from_chunks(frames))
        models = {"object": "list", "data": [{"id": "fake", "object": "model", "created": 0}]}
        self.models = _json_response("200 OK", models)
        self.not_found = _json_response("404 Not Found", {"error": {"message": "no such route"}})


class LLMProtocol(asyncio.Protocol):
    """One client connection (keep-alive; one request at a time, as HTTP/1.1 clients send)."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._body: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._body = b"", []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        path = self._url.split(b"?", 1)[0]
        if path.endswith(b"/chat/completions") and self._parser.get_method() == b"POST":
            try:
                stream = bool(orjson.loads(b"".join(self._body)).get("stream"))
            except (orjson.JSONDecodeError, AttributeError):
                stream = False
            if stream:
                self._write(self._script.first)
                if self._script.paced:
                    self._schedule(0)
                else:
                    self._write(self._script.last)
            else:
                self._write(self._script.completion)
        elif path.endswith(b"/models"):
            self._write(self._script.models)
        else:
            self._write(self._script.not_found)

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _schedule(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._script.interval, self._next, index)

    def _next(self, index: int) -> None:
        self._timer = None
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.write(self._script.paced[index])
        if index + 1 < len(self._script.paced):
            self._schedule(index + 1)
        else:
            self._transport.write(self._script.last)


async def serve(port: int, chunks: int, interval: float) -> None:
    """Serve on 127.0.0.1 until stdin closes; print the base URL first."""
    script = Script(chunks, interval)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: LLMProtocol(script), "127.0.0.1", port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{bound}/v1", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per turn")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between them")
    args = parser.parse_args()
    if not 1 <= args.chunks <= len(WORDS):
        parser.error(f"--chunks: 1 to {len(WORDS)} (the reply has {len(WORDS)} characters)")
    uvloop.run(serve(args.port, args.chunks, args.interval))


if __name__ == "__main__":
    main()
