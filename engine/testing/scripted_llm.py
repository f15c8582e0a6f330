"""An in-process `LLM` that plays scripted responses: the test fake and the demo default."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from ..errors import LLMError
from ..llm_errors import llm_error, llm_error_for
from .chunks import (
    Chunk,
    Cut,
    Delay,
    ErrorEvent,
    Hang,
    Malformed,
    RawBytes,
    Reset,
    Response,
    Script,
    Status,
    as_responder,
    completion_from_chunks,
    response_chunks,
    sse_frames,
)


class ScriptedLLM:
    """Implements the `LLM` port from a script, raising the `LLMError`s the real adapter would.

    `script` is a list of responses (one per request, in order) or a callable
    `(request_body) -> Response`. A `Hang` step waits `timeout` seconds, then raises `timeout`,
    as the real adapter does when the first byte (or the next one) never comes.
    """

    def __init__(self, script: Script, *, timeout: float = 0.0) -> None:
        self._respond = as_responder(script)
        self._timeout = timeout
        self.requests: list[dict[str, Any]] = []
        """Every request body received, deep-copied when received."""

    def _next(self, body: Mapping[str, Any]) -> Response:
        self.requests.append(copy.deepcopy(dict(body)))
        return self._respond(body)

    async def stream(self, body: Mapping[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Yield the scripted chunks; raise `LLMError` at the scripted fault."""
        response = self._next(body)
        started = False
        raw = b""
        for step in response.steps:
            if isinstance(step, dict):
                yield _checked(step)
            elif isinstance(step, RawBytes):
                frames, raw = sse_frames(raw + step.data)
                for event, data in frames:
                    if data == b"[DONE]":
                        return
                    chunk = _frame_chunk(event, data)
                    if chunk is not None:
                        yield chunk
            elif isinstance(step, Delay):
                await asyncio.sleep(step.seconds)
            elif isinstance(step, Cut):
                return
            else:
                raise await self._fault(step, started)
            started = True
        if raw.strip():
            for event, data in sse_frames(raw + b"\n\n")[0]:
                chunk = _frame_chunk(event, data) if data != b"[DONE]" else None
                if chunk is not None:
                    yield chunk

    async def _fault(self, step: object, started: bool) -> LLMError:
        if isinstance(step, Status):
            if started:
                raise TypeError("a Status step must come first in a scripted response")
            return llm_error_for(step.status, step.error or {"message": "scripted"}, step.headers)
        if isinstance(step, Hang):
            await asyncio.sleep(self._timeout)
            what = "next chunk" if started else "first byte"
            return llm_error("timeout", f"no {what} within {self._timeout}s", retryable=True)
        if isinstance(step, Reset):
            return llm_error("stream_error", "connection reset mid-stream", retryable=True)
        if isinstance(step, Malformed):
            return _malformed(step.text.encode())
        if isinstance(step, ErrorEvent):
            return llm_error_for(None, step.error.get("error", step.error))
        raise TypeError(
            f"unknown script step {step!r}; use the step types of engine.testing.chunks"
        )

    async def complete(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The scripted response as a `chat.completion` dict."""
        response = self._next(body)
        for step in response.steps:
            if isinstance(step, Delay):
                await asyncio.sleep(step.seconds)
            elif not isinstance(step, dict | RawBytes | Cut):
                raise await self._fault(step, False)
        chunks = list(response_chunks(response))
        for chunk in chunks:
            _checked(chunk)
        return completion_from_chunks(chunks)

    async def aclose(self) -> None:
        """Nothing to release."""


def _checked(chunk: Chunk) -> Chunk:
    error = chunk.get("error")
    if error:
        raise llm_error_for(None, error)
    return chunk


def _frame_chunk(event: str | None, data: bytes) -> Chunk | None:
    if event == "error":
        try:
            payload = json.loads(data)
        except ValueError:
            payload = {"message": data.decode(errors="replace")}
        raise llm_error_for(
            None, payload.get("error", payload) if isinstance(payload, dict) else payload
        )
    if event not in (None, "message"):
        return None
    try:
        chunk = json.loads(data)
    except ValueError:
        raise _malformed(data) from None
    if not isinstance(chunk, dict):
        raise _malformed(data)
    return _checked(chunk)


def _malformed(data: bytes) -> LLMError:
    return llm_error("stream_error", f"malformed chunk {data[:80]!r}", retryable=True)
