"""A run's events as an OpenAI `chat.completion.chunk` SSE stream (the per-token path).

Wire order: a role chunk (sent before the first event is read, so the client has bytes at
once and a turn with no text is never an empty 200), content deltas and client tool calls,
exactly one final chunk with `finish_reason`, the usage chunk when the request asked for it,
`data: [DONE]`. A failure once the stream has begun becomes one error frame then `[DONE]`:
the stream never just stops. Everything constant about a chunk is encoded once per stream, so
a text delta costs one `orjson.dumps` of its text and two byte concatenations.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

import orjson

from loopwright.schemas import ClientToolCall, Event, RunFailed, RunFinished, TextDelta, Usage

from .keepalive import PING, KeepAlive

__all__ = [
    "DONE",
    "FINISH_REASONS",
    "PING",
    "ChunkEncoder",
    "CompletionError",
    "KeepAlive",
    "StreamContractError",
    "collect_completion",
    "encode_stream",
    "error_body",
    "error_frame",
]

_log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
"""The last frame of every stream."""

FINISH_REASONS: Mapping[str, str] = {
    "final": "stop",
    "max_steps": "length",
    "max_transitions": "length",
    "max_wall_time": "length",
}
"""`RunFinished.stop_reason` to `finish_reason`; other reasons (custom final states) are `stop`.
`cancelled` is not here: a run cancelled under a listening client ends with an error frame."""

_ERROR_KINDS: Mapping[str, tuple[str, int]] = {
    "bad_request": ("invalid_request_error", 400),
    "context_overflow": ("invalid_request_error", 400),
    "rate_limited": ("rate_limit_error", 429),
    "timeout": ("timeout_error", 504),
    "cancelled": ("server_error", 503),
}
"""Run error code to (OpenAI error `type`, HTTP status); anything else is a server error."""


class StreamContractError(ValueError):
    """The event stream broke the encoder's contract (a bug in the producer of the events)."""


class CompletionError(RuntimeError):
    """The run behind a non-streaming completion failed; answer with `status` and `body`."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(f"the run failed ({code}): {message}")
        self.message = message
        self.code = code
        self.type, self.status = _ERROR_KINDS.get(code, ("server_error", 500))

    @property
    def body(self) -> dict[str, Any]:
        """The OpenAI error body: `{"error": {"message", "type", "code"}}`."""
        return error_body(self.message, self.code)


def error_body(message: str, code: str) -> dict[str, Any]:
    """`{"error": {"message", "type", "code"}}` for a run error code."""
    kind = _ERROR_KINDS.get(code, ("server_error", 500))[0]
    return {"error": {"message": message, "type": kind, "code": code}}


def error_frame(message: str, code: str) -> bytes:
    """The in-stream error frame (the `openai` SDK raises `APIError(message)` on it)."""
    return b"data: " + orjson.dumps(error_body(message, code)) + b"\n\n"


class ChunkEncoder:
    """The frames of one completion, sharing a prefix encoded once."""

    __slots__ = ("_content", "_delta", "_head", "_tail", "_text_tail")

    def __init__(self, *, id: str, created: int, model: str) -> None:
        if not id.startswith("chatcmpl-"):
            raise ValueError(f"completion id {id!r} must start with 'chatcmpl-'; prefix it")
        head = orjson.dumps(
            {"id": id, "object": "chat.completion.chunk", "created": created, "model": model}
        )
        self._head = b"data: " + head[:-1]
        self._delta = self._head + b',"choices":[{"index":0,"delta":'
        self._content = self._delta + b'{"content":'
        self._tail = b',"finish_reason":null}]}\n\n'
        self._text_tail = b"}" + self._tail

    def role(self) -> bytes:
        """The opening chunk: `{"role": "assistant", "content": ""}`."""
        return self._delta + b'{"role":"assistant","content":""}' + self._tail

    def content(self, text: str) -> bytes:
        """A content delta (callers never pass empty text)."""
        return self._content + orjson.dumps(text) + self._text_tail

    def tool_call(self, index: int, *, id: str, name: str, arguments: str = "") -> bytes:
        """One client tool call, whole: index, id, type, name and its arguments."""
        call = {
            "index": index,
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        return self._delta + orjson.dumps({"tool_calls": [call]}) + self._tail

    def finish(self, reason: str) -> bytes:
        """The one final chunk: empty delta, `finish_reason`."""
        return self._delta + b'{},"finish_reason":' + orjson.dumps(reason) + b"}]}\n\n"

    def usage(self, usage: Mapping[str, int]) -> bytes:
        """The `choices: []` usage chunk (`stream_options.include_usage`)."""
        return self._head + b',"choices":[],"usage":' + orjson.dumps(usage) + b"}\n\n"


class _Turn:
    """What the terminal frames need: summed usage and the client calls' wire indexes."""

    __slots__ = ("calls", "completion", "prompt", "total")

    def __init__(self) -> None:
        self.calls: dict[int, int] = {}
        self.prompt = self.completion = self.total = 0

    def add_usage(self, event: Usage) -> None:
        self.prompt += event.prompt_tokens
        self.completion += event.completion_tokens
        self.total += event.total_tokens

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.total,
        }

    def place(self, event: ClientToolCall) -> int:
        """The wire index of a client call (0, 1, ... in the order the calls came)."""
        if event.index in self.calls:
            raise StreamContractError(
                f"client tool call {event.index} was sent twice; a ClientToolCall carries a "
                "whole call, each index once"
            )
        if not event.id or not event.name:
            raise StreamContractError(
                f"client tool call {event.index} has no id or no name; a ClientToolCall must "
                "carry both"
            )
        index = self.calls[event.index] = len(self.calls)
        return index

    def finish_reason(self, stop_reason: str) -> str:
        return "tool_calls" if self.calls else FINISH_REASONS.get(stop_reason, "stop")


_CANCELLED = "the run was cancelled before it finished; retry the request"
_NO_TERMINAL = "the run ended without a terminal event; retry the request"


def _end(turn: _Turn, enc: ChunkEncoder, event: RunFinished, include_usage: bool) -> bytes:
    # The closing frames in one piece: one write to the socket, not three.
    if event.stop_reason == "cancelled":
        return error_frame(_CANCELLED, "cancelled") + DONE
    finish = enc.finish(turn.finish_reason(event.stop_reason))
    if include_usage:
        return finish + enc.usage(turn.usage()) + DONE
    return finish + DONE


def _tool_frame(turn: _Turn, enc: ChunkEncoder, event: ClientToolCall) -> bytes:
    index = turn.place(event)
    return enc.tool_call(index, id=event.id, name=event.name, arguments=event.arguments)


async def encode_stream(
    events: AsyncIterable[Event],
    *,
    model: str,
    include_usage: bool,
    id: str,
    created: int,
) -> AsyncIterator[bytes]:
    """The SSE frames of one run's events; reading stops at the terminal event. The closing
    frames (final chunk, usage, `[DONE]`; or an error frame and `[DONE]`) come as one piece,
    the last, ending with `DONE`.

    Raises `ValueError` for a bad `id` before the first frame. Cancellation and `aclose()`
    propagate (and close `events`); every other exception becomes an error frame.
    """
    enc = ChunkEncoder(id=id, created=created, model=model)
    yield enc.role()
    turn = _Turn()
    source = aiter(events)
    try:
        async for event in source:
            if isinstance(event, TextDelta):
                if event.text:
                    yield enc.content(event.text)
            elif isinstance(event, Usage):
                turn.add_usage(event)
            elif isinstance(event, ClientToolCall):
                yield _tool_frame(turn, enc, event)
            elif isinstance(event, RunFinished):
                yield _end(turn, enc, event, include_usage)
                return
            elif isinstance(event, RunFailed):
                yield error_frame(event.message, event.code) + DONE
                return
        yield error_frame(_NO_TERMINAL, "incomplete_run") + DONE
    except Exception as err:
        _log.exception("completion %s: the run's event stream failed", id)
        yield error_frame(_internal_message(err), _internal_code(err)) + DONE
    finally:
        await _close(source)


def _internal_message(err: Exception) -> str:
    if isinstance(err, StreamContractError):
        return f"internal error: {err}"
    # Details stay in the server log: an exception text can hold paths, URLs or data.
    return f"internal error ({type(err).__name__}); retry the request, the server log has details"


def _internal_code(err: Exception) -> str:
    return "stream_contract" if isinstance(err, StreamContractError) else "internal_error"


async def _close(source: AsyncIterator[Any]) -> None:
    aclose = getattr(source, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception:  # the answer is complete or already failed: only the log can tell
        _log.exception("closing the run's event stream failed")


async def collect_completion(
    events: AsyncIterable[Event], *, model: str, id: str, created: int
) -> dict[str, Any]:
    """The same events folded into one `chat.completion` object (non-streaming requests).

    Raises `CompletionError` when the run fails, is cancelled or ends without a terminal event;
    exceptions of `events` propagate (nothing has been sent yet).
    """
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    turn = _Turn()
    source = aiter(events)
    try:
        async for event in source:
            if isinstance(event, TextDelta):
                text.append(event.text)
            elif isinstance(event, Usage):
                turn.add_usage(event)
            elif isinstance(event, ClientToolCall):
                _fold_call(calls, turn, event)
            elif isinstance(event, RunFailed):
                raise CompletionError(event.message, code=event.code)
            elif isinstance(event, RunFinished):
                if event.stop_reason == "cancelled":
                    raise CompletionError(_CANCELLED, code="cancelled")
                reason = turn.finish_reason(event.stop_reason)
                return _completion(id, created, model, "".join(text), calls, reason, turn)
    finally:
        await _close(source)
    raise CompletionError(_NO_TERMINAL, code="incomplete_run")


def _fold_call(calls: list[dict[str, Any]], turn: _Turn, event: ClientToolCall) -> None:
    turn.place(event)
    function = {"name": event.name, "arguments": event.arguments}
    calls.append({"id": event.id, "type": "function", "function": function})


def _completion(
    id: str,
    created: int,
    model: str,
    text: str,
    calls: list[dict[str, Any]],
    reason: str,
    turn: _Turn,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text or (None if calls else ""),
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reason}],
        "usage": turn.usage(),
    }
