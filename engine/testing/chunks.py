"""Scripted OpenAI streams: chunk builders, response scripts and the fault taxonomy.

Plain dicts in the exact `chat.completion.chunk` shape, so the scripted LLM and the fake
OpenAI-compatible server replay one script identically. No I/O, no `openai` import.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from attrs import field, frozen

from ..errors import LoopwrightError

Chunk = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# Chunk builders


def _chunk(choices: list[Any], meta: Mapping[str, Any] | None) -> Chunk:
    chunk: Chunk = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "scripted",
    }
    if meta:
        chunk.update(meta)
    chunk["choices"] = choices
    return chunk


def _choice(delta: Mapping[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish_reason}


def delta_chunk(
    delta: Mapping[str, Any],
    *,
    finish_reason: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Chunk:
    """A chunk with one choice carrying `delta` (any provider shape)."""
    return _chunk([_choice(delta, finish_reason)], meta)


def role_chunk(*, meta: Mapping[str, Any] | None = None) -> Chunk:
    """The opening chunk: `{"role": "assistant", "content": ""}`."""
    return _chunk([_choice({"role": "assistant", "content": ""})], meta)


def content_chunk(text: str, *, meta: Mapping[str, Any] | None = None) -> Chunk:
    """One content delta."""
    return _chunk([_choice({"content": text})], meta)


def tool_call_chunk(
    index: int | None,
    *,
    id: str | None = None,
    name: str | None = None,
    arguments: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Chunk:
    """One tool-call fragment; `index=None` leaves the key out (Ollama, Mistral)."""
    return _chunk([_choice({"tool_calls": [tool_call_fragment(index, id, name, arguments)]})], meta)


def tool_call_fragment(
    index: int | None, id: str | None = None, name: str | None = None, arguments: str | None = None
) -> dict[str, Any]:
    """One entry of `delta.tool_calls` (header fields only when given)."""
    entry: dict[str, Any] = {} if index is None else {"index": index}
    function: dict[str, Any] = {}
    if id is not None:
        entry["id"] = id
        entry["type"] = "function"
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    entry["function"] = function
    return entry


def finish_chunk(
    reason: str = "stop",
    *,
    usage: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Chunk:
    """The chunk carrying `finish_reason` (and usage, as some providers send it)."""
    chunk = _chunk([_choice({}, reason)], meta)
    if usage is not None:
        chunk["usage"] = dict(usage)
    return chunk


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """A usage object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def usage_chunk(
    prompt_tokens: int, completion_tokens: int, *, meta: Mapping[str, Any] | None = None
) -> Chunk:
    """The trailing `choices: []` chunk sent for `stream_options.include_usage`."""
    chunk = _chunk([], meta)
    chunk["usage"] = usage(prompt_tokens, completion_tokens)
    return chunk


def error_chunk(
    message: str, *, code: str | int | None = None, meta: Mapping[str, Any] | None = None
) -> Chunk:
    """An ordinary-looking chunk with a top-level `error` object (OpenRouter)."""
    chunk = _chunk([_choice({"content": ""})], meta)
    chunk["error"] = {"message": message, "code": code}
    return chunk


# ---------------------------------------------------------------------------------------------
# Script steps and faults


@frozen
class RawBytes:
    """Bytes written to the wire as they are (any SSE framing, or none)."""

    data: bytes


@frozen
class Delay:
    """Pause before the next step."""

    seconds: float


@frozen(kw_only=True)
class Status:
    """Answer with an HTTP error status instead of a stream (must be the first step)."""

    status: int
    error: Mapping[str, Any] | None = None
    """The `error` object of the JSON body; None sends `{"error": {"message": ...}}`."""
    headers: Mapping[str, str] = field(factory=dict)
    """E.g. `{"Retry-After": "2"}`."""


@frozen
class Hang:
    """Send nothing more (before the headers if first): the client must time out."""


@frozen
class Reset:
    """Drop the connection mid-stream (no terminating chunk)."""


@frozen
class Cut:
    """End the body cleanly here, without `[DONE]` (a truncated but well-formed stream)."""


@frozen
class Malformed:
    """A `data:` frame whose JSON does not parse."""

    text: str = '{"id": "chatcmpl-scripted", "choices": [{"delta": {"content": "x"'


@frozen
class ErrorEvent:
    """An `event: error` frame with `{"error": ...}`, then the connection closes (Groq)."""

    error: Mapping[str, Any]


Step = Chunk | RawBytes | Delay | Status | Hang | Reset | Cut | Malformed | ErrorEvent


@frozen(kw_only=True)
class Response:
    """One scripted response: its steps, then `[DONE]` unless a step ended it first."""

    steps: tuple[Step, ...]
    done: bool = True
    """Send `data: [DONE]` after the last step."""


Responder = Callable[[Mapping[str, Any]], Response]
"""Builds the response to one request body."""

Script = Sequence[Response] | Responder


class ScriptExhaustedError(LoopwrightError, LookupError):
    """A scripted LLM got more requests than its script has responses."""

    def __init__(self, count: int) -> None:
        super().__init__(
            f"the script has {count} response(s) and all were used; add a response for this "
            "request or pass a responder callable"
        )


def as_responder(script: Script) -> Responder:
    """A responder from a list (served in order, once each) or a callable (used as is)."""
    if callable(script):
        return script
    responses = iter(tuple(script))
    count = len(script)

    def next_response(_body: Mapping[str, Any]) -> Response:
        try:
            return next(responses)
        except StopIteration:
            raise ScriptExhaustedError(count) from None

    return next_response


def encode_frame(data: bytes | str, event: str | None = None) -> bytes:
    """One SSE frame: optional `event:` line, one `data:` line, blank line."""
    payload = data.encode() if isinstance(data, str) else data
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + payload + b"\n\n"


def step_bytes(step: Chunk | Malformed | ErrorEvent | RawBytes) -> bytes:
    """The wire bytes of a step that is pure data."""
    if isinstance(step, RawBytes):
        return step.data
    if isinstance(step, Malformed):
        return encode_frame(step.text)
    if isinstance(step, ErrorEvent):
        return encode_frame(json.dumps({"error": dict(step.error)}), "error")
    return encode_frame(json.dumps(step, separators=(",", ":")))


def sse_frames(data: bytes) -> tuple[list[tuple[str | None, bytes]], bytes]:
    """Complete SSE frames of `data` and the unparsed rest (a whole-buffer parser for fakes)."""
    frames: list[tuple[str | None, bytes]] = []
    text = data.replace(b"\r\n", b"\n")
    *blocks, rest = text.split(b"\n\n")
    for block in blocks:
        event: str | None = None
        lines: list[bytes] = []
        for line in block.split(b"\n"):
            name, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if name == b"data":
                lines.append(value)
            elif name == b"event":
                event = value.decode()
        if lines:
            frames.append((event, b"\n".join(lines)))
    return frames, rest


# ---------------------------------------------------------------------------------------------
# Realistic fragmented responses


def split_text(text: str, parts: int) -> list[str]:
    """`text` in `parts` consecutive non-empty pieces (fewer if it is shorter)."""
    parts = max(1, min(parts, len(text)))
    size, extra = divmod(len(text), parts)
    pieces, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return [p for p in pieces if p]


@frozen(kw_only=True)
class CallSpec:
    """A tool call to script: its id, name and JSON arguments text."""

    id: str
    name: str
    arguments: str = "{}"


def text_reply(
    text: str,
    *,
    parts: int = 4,
    usage_tokens: tuple[int, int] | None = (10, 5),
    finish_reason: str = "stop",
    meta: Mapping[str, Any] | None = None,
) -> Response:
    """A text answer streamed in `parts` deltas, a finish chunk and (optionally) usage."""
    steps: list[Step] = [role_chunk(meta=meta)]
    steps += [content_chunk(piece, meta=meta) for piece in split_text(text, parts)]
    steps.append(finish_chunk(finish_reason, meta=meta))
    if usage_tokens is not None:
        steps.append(usage_chunk(*usage_tokens, meta=meta))
    return Response(steps=tuple(steps))


def tool_calls_reply(
    calls: Sequence[CallSpec],
    *,
    text: str = "",
    fragments: int = 3,
    usage_tokens: tuple[int, int] | None = (20, 10),
    finish_reason: str = "tool_calls",
    meta: Mapping[str, Any] | None = None,
) -> Response:
    """Optional text, then parallel calls: a header chunk each, arguments in fragments."""
    steps: list[Step] = [role_chunk(meta=meta)]
    steps += [content_chunk(piece, meta=meta) for piece in split_text(text, 3) if text]
    for index, call in enumerate(calls):
        steps.append(tool_call_chunk(index, id=call.id, name=call.name, arguments="", meta=meta))
        for piece in split_text(call.arguments, fragments):
            steps.append(tool_call_chunk(index, arguments=piece, meta=meta))
    steps.append(finish_chunk(finish_reason, meta=meta))
    if usage_tokens is not None:
        steps.append(usage_chunk(*usage_tokens, meta=meta))
    return Response(steps=tuple(steps))


def response_chunks(response: Response) -> Iterator[Chunk]:
    """The chunk dicts of a response (raw steps parsed), up to the first fault."""
    raw = b""
    for step in response.steps:
        if isinstance(step, dict):
            yield step
        elif isinstance(step, RawBytes):
            frames, raw = sse_frames(raw + step.data)
            for event, data in frames:
                if event in (None, "message") and data != b"[DONE]":
                    yield json.loads(data)
        elif not isinstance(step, Delay):
            return


def _fold_call(calls: dict[Any, dict[str, Any]], tc: Mapping[str, Any]) -> None:
    fn = tc.get("function") or {}
    key = tc.get("index")
    if key is None:  # no index (Ollama, Mistral): a new id starts a call, else continue the last
        key = tc.get("id") or (next(reversed(calls)) if calls else 0)
    call = calls.get(key)
    if call is None:
        call = calls[key] = {
            "id": "",
            "type": "function",
            "function": {"name": "", "arguments": ""},
        }
    call["id"] = call["id"] or tc.get("id") or ""
    call["function"]["name"] = call["function"]["name"] or fn.get("name") or ""
    call["function"]["arguments"] += fn.get("arguments") or ""


def completion_from_chunks(chunks: Sequence[Chunk]) -> dict[str, Any]:
    """The non-streaming `chat.completion` equivalent to a chunk sequence (choice 0)."""
    first = next((c for c in chunks if c.get("id")), {})
    text: list[str] = []
    calls: dict[Any, dict[str, Any]] = {}
    finish, usage_obj = None, None
    for chunk in chunks:
        usage_obj = chunk.get("usage") or usage_obj
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            finish = finish or choice.get("finish_reason")
            delta = choice.get("delta") or {}
            text.append(delta.get("content") or "")
            for tc in delta.get("tool_calls") or ():
                _fold_call(calls, tc)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = list(calls.values())
    return {
        "id": first.get("id", "chatcmpl-scripted"),
        "object": "chat.completion",
        "created": first.get("created", 0),
        "model": first.get("model", "scripted"),
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish or "stop"}
        ],
        "usage": usage_obj,
    }
