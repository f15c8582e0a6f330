"""A fake OpenAI-compatible server on loopback, playing scripts (tests, benchmarks, demo).

`async with FakeOpenAIServer(script) as srv:` serves `POST /v1/chat/completions` (streaming
and not, from the same scripts; also the Azure path `/openai/deployments/{name}/...`) and
`GET /v1/models` at `srv.base_url`. It replays corpus `.sse` files byte for byte, injects the
faults of `loopwright.engine.testing.chunks`, and records every request. Without a script it
runs `demo_responder`, a deterministic model for `loopwright demo`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web
from attrs import frozen

from loopwright.engine.testing.chunks import (
    CallSpec,
    Cut,
    Delay,
    ErrorEvent,
    Hang,
    Malformed,
    RawBytes,
    Reset,
    Response,
    Script,
    ScriptExhaustedError,
    Status,
    as_responder,
    completion_from_chunks,
    response_chunks,
    step_bytes,
    text_reply,
    tool_calls_reply,
)


@frozen(kw_only=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    """HTTP method."""
    path: str
    """URL path."""
    query: Mapping[str, str]
    """Query parameters (Azure's `api-version`)."""
    headers: Mapping[str, str]
    """Headers, names lower-cased."""
    body: Any
    """The parsed JSON body (None for GET)."""
    at: float
    """When it arrived, on the event loop's monotonic clock (`loop.time()`): the gap between
    two requests bounds the client's retry wait from below."""


def replay(source: Path | str | bytes, *, read_size: int | None = None) -> Response:
    """A response that writes a recorded `.sse` body byte for byte (in `read_size` writes)."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    size = read_size or len(data) or 1
    pieces = tuple(RawBytes(data[i : i + size]) for i in range(0, len(data), size))
    return Response(steps=pieces, done=False)


class FakeOpenAIServer:
    """An aiohttp OpenAI-compatible server on 127.0.0.1 (a free port unless given)."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        models: Sequence[str] = ("scripted", "demo"),
        host: str = "127.0.0.1",
        port: int = 0,
        hang_limit: float = 30.0,
    ) -> None:
        self._respond = as_responder(script if script is not None else demo_responder)
        self._models = tuple(models)
        self._host, self._port = host, port
        self._hang_limit = hang_limit
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._disconnect = asyncio.Event()
        self.requests: list[RecordedRequest] = []
        """Every request received, in arrival order."""
        self.disconnects = 0
        """Streams the client abandoned before the server finished writing them."""
        self.base_url = ""
        """`http://127.0.0.1:PORT/v1`, set once started."""

    async def __aenter__(self) -> FakeOpenAIServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind and serve."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._list_models)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://{self._host}:{port}/v1"

    async def close(self) -> None:
        """Stop serving (hanging handlers are released first)."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_disconnect(self, seconds: float = 5.0) -> None:
        """Wait until a client abandons a stream. Raises: TimeoutError."""
        async with asyncio.timeout(seconds):
            await self._disconnect.wait()

    async def _list_models(self, request: web.Request) -> web.Response:
        self._record(request, None)
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "loopwright"}
            for m in self._models
        ]
        return web.json_response({"object": "list", "data": data})

    def _record(self, request: web.Request, body: Any) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=headers,
                body=body,
                at=asyncio.get_running_loop().time(),
            )
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error_response(400, {"message": "the body is not JSON"})
        self._record(request, body)
        try:
            response = self._respond(body)
        except ScriptExhaustedError as exc:
            return _error_response(500, {"message": str(exc), "type": "server_error"})
        first = response.steps[0] if response.steps else None
        if isinstance(first, Status):
            return _error_response(first.status, first.error, first.headers)
        if isinstance(first, Hang):
            await self._hang(request)
            return web.Response(status=504)
        if isinstance(body, dict) and body.get("stream"):
            return await self._stream(request, response)
        return await self._complete(request, response)

    async def _stream(self, request: web.Request, response: Response) -> web.StreamResponse:
        stream = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        await stream.prepare(request)
        try:
            for step in response.steps:
                if isinstance(step, Delay):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, Hang):
                    await self._hang(request)
                    return stream
                elif isinstance(step, Reset):
                    _abort(request)
                    return stream
                elif isinstance(step, Cut):
                    break
                elif isinstance(step, Status):
                    raise TypeError("a Status step must be the first step of a response")
                else:
                    await stream.write(step_bytes(step))
                    if isinstance(step, ErrorEvent):
                        break
            else:
                if response.done:
                    await stream.write(b"data: [DONE]\n\n")
            await stream.write_eof()
        except ConnectionResetError:
            self._client_left()
        return stream

    async def _complete(self, request: web.Request, response: Response) -> web.StreamResponse:
        for step in response.steps:
            if isinstance(step, Delay):
                await asyncio.sleep(step.seconds)
            elif isinstance(step, Hang):
                await self._hang(request)
                return web.Response(status=504)
            elif isinstance(step, Reset):
                _abort(request)
                return web.Response(status=500)
            elif isinstance(step, Malformed):
                return web.Response(text=step.text, content_type="application/json")
            elif isinstance(step, ErrorEvent):
                error = dict(step.error.get("error", step.error))
                status = error.get("status_code")
                return _error_response(status if isinstance(status, int) else 500, error)
        chunks = list(response_chunks(response))
        errors = [c["error"] for c in chunks if c.get("error")]
        if errors:
            return _error_response(500, errors[0])
        return web.json_response(completion_from_chunks(chunks))

    async def _hang(self, request: web.Request) -> None:
        """Send nothing until the client gives up (or the server closes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._hang_limit
        while not self._closing.is_set() and loop.time() < deadline:
            transport = request.transport
            if transport is None or transport.is_closing():
                self._client_left()
                return
            await asyncio.sleep(0.01)

    def _client_left(self) -> None:
        self.disconnects += 1
        self._disconnect.set()


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


def _error_response(
    status: int, error: Mapping[str, Any] | None, headers: Mapping[str, str] | None = None
) -> web.Response:
    payload = dict(error) if error else {"message": f"scripted error {status}"}
    payload.setdefault("type", "server_error" if status >= 500 else "invalid_request_error")
    payload.setdefault("code", "")
    return web.json_response({"error": payload}, status=status, headers=dict(headers or {}))


# ---------------------------------------------------------------------------------------------
# The demo model


def demo_responder(body: Mapping[str, Any]) -> Response:
    """A deterministic model: call the first tool after a user turn, else reply briefly.

    Tool arguments are plausible values from the tool's JSON Schema, `pre_exec_msg` first
    when the schema has it; the reply streams in several deltas; usage is sent when the
    request asks for it (`stream_options.include_usage`).
    """
    messages = list(body.get("messages") or [])
    last = messages[-1] if messages else {}
    tools = list(body.get("tools") or [])
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    meta = {"id": f"chatcmpl-demo-{digest[:12]}", "model": body.get("model") or "demo"}
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    prompt_tokens = sum(len(_text_of(m).split()) for m in messages)
    if tools and last.get("role") == "user":
        function = tools[0].get("function") or {}
        args = json.dumps(_plausible_object(function.get("parameters") or {}, _text_of(last)))
        call = CallSpec(
            id=f"call_demo_{digest[:12]}", name=function.get("name", ""), arguments=args
        )
        used = (prompt_tokens, max(1, len(args) // 4)) if wants_usage else None
        return tool_calls_reply([call], fragments=4, usage_tokens=used, meta=meta)
    reply = _reply_to(last)
    used = (prompt_tokens, len(reply.split())) if wants_usage else None
    return text_reply(reply, parts=max(2, len(reply.split()) // 2), usage_tokens=used, meta=meta)


def _text_of(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def _reply_to(message: Mapping[str, Any]) -> str:
    text = re.sub(r"\s+", " ", _text_of(message)).strip()
    short = text if len(text) <= 80 else text[:77] + "..."
    if message.get("role") == "tool":
        return f"Done. The tool said: {short}" if short else "Done."
    if message.get("role") == "user" and short:
        return f"You said: {short}. I am the loopwright demo model."
    return "Hello! I am the loopwright demo model."


_TEXT_NAMES = ("query", "text", "message", "content", "question", "prompt", "input")


def _plausible_object(schema: Mapping[str, Any], user_text: str) -> dict[str, Any]:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or properties)
    args: dict[str, Any] = {}
    if "pre_exec_msg" in properties:
        args["pre_exec_msg"] = "One moment, let me check that."
    for name, prop in properties.items():
        if name != "pre_exec_msg" and name in required:
            args[name] = _plausible_value(
                name, prop if isinstance(prop, Mapping) else {}, user_text
            )
    return args


def _plausible_value(name: str, schema: Mapping[str, Any], user_text: str) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return _plausible_value(name, options[0], user_text)
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "string":
        wants_text = any(part in name.lower() for part in _TEXT_NAMES)
        if wants_text:
            return user_text or "example"
        # A proper noun from the user's words makes a believable value ("Paris" for `city`).
        names = re.findall(r"\b[A-Z][a-z]+(?:\s[A-Z][a-z]+)*", user_text)
        return names[-1] if names else "example"
    return {
        "integer": 1,
        "number": 1.0,
        "boolean": True,
        "array": [],
        "object": _plausible_object(schema, user_text),
    }.get(kind)
