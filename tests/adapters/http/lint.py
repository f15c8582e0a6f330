"""A strict linter for the OpenAI-compatible SSE streams the server sends.

Every test that reads a stream from `loopwright.adapters.http` runs `lint_stream` on the raw
body. It checks the whole wire contract and fails with `StreamLintError` naming the frame
(numbered from 1) and the broken rule:

- framing: each frame is one `data: <payload>` line or one `:` comment line, then a blank line;
  LF only; no `event:` field, no empty `data:`, no stray blank line, no truncated last frame;
- every chunk: `object` `chat.completion.chunk`, the same `id` (`chatcmpl-…`), `created` and
  `model` throughout, no other top-level keys;
- delta chunks: `choices` is `[{index: 0, delta, finish_reason}]`; the first chunk is the role
  chunk `{"role": "assistant", "content": ""}` and no other chunk has a role; content deltas
  are non-empty; tool-call fragments open with `index`, `id`, `type: "function"`, name (and
  arguments), continue with only `index` and non-empty argument text, indexes 0-based and
  consecutive;
- exactly one final chunk: `delta: {}`, `finish_reason` `stop` | `length` without tool calls,
  `tool_calls` with them; every other chunk has `finish_reason: null`;
- then the usage chunk (`choices: []`, token counts that add up) if and only if the request
  asked for `include_usage`;
- or, anywhere after the role chunk and before the final chunk, one error frame
  `{"error": {"message", "type", "code"}}`;
- then exactly one `data: [DONE]`, the last frame. `: ping` comments may appear before it.
"""

from __future__ import annotations

from typing import Any

import orjson
from attrs import frozen

_ENVELOPE = frozenset({"id", "object", "created", "model", "choices"})
_FINISH_REASONS = frozenset({"stop", "length", "tool_calls"})
_USAGE_KEYS = frozenset({"prompt_tokens", "completion_tokens", "total_tokens"})
_ROLE_DELTA = {"role": "assistant", "content": ""}


class StreamLintError(AssertionError):
    """A stream broke the wire contract; the message names the frame and the rule."""

    def __init__(self, number: int | None, frame: bytes | None, problem: str) -> None:
        where = "stream" if number is None else f"frame {number} {_show(frame or b'')}"
        super().__init__(f"{where}: {problem}")
        self.number = number
        self.problem = problem


def _show(frame: bytes) -> str:
    text = repr(frame)
    return text if len(text) <= 160 else text[:150] + "…" + text[-9:]


@frozen(kw_only=True)
class ParsedToolCall:
    """A client tool call reassembled from its fragments."""

    id: str
    name: str
    arguments: str


@frozen(kw_only=True)
class ParsedStream:
    """What a client makes of a lint-clean stream."""

    text: str
    """All content deltas joined."""
    tool_calls: tuple[ParsedToolCall, ...]
    finish_reason: str | None
    """None when the stream ended with an error frame."""
    usage: dict[str, int] | None
    """The usage chunk's counts (None when not asked for, or after an error)."""
    error: dict[str, Any] | None
    """The error frame's `error` object, if the stream failed."""
    chunks: tuple[dict[str, Any], ...]
    """Every chunk (not the error frame), parsed."""
    pings: int
    """Comment frames seen."""


def lint_stream(raw: bytes, *, include_usage: bool) -> ParsedStream:
    """Check `raw` against every rule above; return what the client would read."""
    linter = _Linter(include_usage)
    for number, line in enumerate(split_frames(raw), 1):
        linter.number, linter.frame = number, line
        linter.feed(line)
    return linter.result()


def split_frames(raw: bytes) -> list[bytes]:
    """The frames' single lines, each checked for framing (see the module docstring)."""
    if not raw:
        raise StreamLintError(None, None, "empty body: a 200 with no frames at all")
    *blocks, rest = raw.split(b"\n\n")
    if rest:
        raise StreamLintError(
            len(blocks) + 1, rest, "the body ends inside a frame (no blank line after it)"
        )
    for number, block in enumerate(blocks, 1):
        problem = _framing_problem(block)
        if problem:
            raise StreamLintError(number, block, problem)
    return blocks


def _framing_problem(block: bytes) -> str | None:
    if not block:
        return "an empty frame (a stray blank line)"
    if b"\r" in block:
        return "a CR in the frame: lines end with LF only"
    if b"\n" in block:
        return "several lines in one frame: send one `data:` line or one comment per frame"
    if block.startswith(b":"):
        return None
    if block.startswith(b"event:"):
        return "an `event:` field: the stream never names events (clients skip such frames)"
    if block.startswith(b"data:"):
        if not block.startswith(b"data: ") or not block[6:].strip():
            return "an empty `data:` field (clients fail to parse it)"
        return None
    return "not a `data:` line nor a `:` comment"


class _Linter:
    """Walks the frames through the phases open → body → finished → usage → done (or error)."""

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.number = 0
        self.frame = b""
        self.phase = "open"
        self.envelope: tuple[Any, Any, Any] | None = None
        self.text: list[str] = []
        self.calls: list[dict[str, str]] = []
        self.finish: str | None = None
        self.usage: dict[str, int] | None = None
        self.error: dict[str, Any] | None = None
        self.chunks: list[dict[str, Any]] = []
        self.pings = 0

    def fail(self, problem: str) -> StreamLintError:
        return StreamLintError(self.number, self.frame, problem)

    def feed(self, line: bytes) -> None:
        if self.phase == "done":
            raise self.fail("a frame after `data: [DONE]`: [DONE] must be the last frame")
        if line.startswith(b":"):
            self.pings += 1
            return
        payload = line[6:]
        if payload == b"[DONE]":
            self.done()
            return
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError as err:
            raise self.fail(f"the data is not JSON ({err})") from None
        if not isinstance(obj, dict):
            raise self.fail(f"the data is a JSON {type(obj).__name__}, not an object")
        if "error" in obj:
            self.error_frame(obj)
            return
        if self.phase == "error":
            raise self.fail("a chunk after the error frame: only [DONE] may follow it")
        self.check_envelope(obj)
        self.chunks.append(obj)
        if obj["choices"] == []:
            self.usage_chunk(obj)
        else:
            self.delta_chunk(obj)

    def done(self) -> None:
        if self.phase in ("open", "body"):
            raise self.fail("[DONE] before the final chunk: a cut answer looks complete")
        if self.phase == "finished" and self.include_usage:
            raise self.fail("[DONE] without the usage chunk the request asked for")
        self.phase = "done"

    def error_frame(self, obj: dict[str, Any]) -> None:
        error = obj["error"]
        if set(obj) != {"error"} or not isinstance(error, dict):
            raise self.fail('an error frame is exactly {"error": {...}}')
        if set(error) != {"message", "type", "code"}:
            raise self.fail(f"error keys {sorted(error)}; want code, message, type")
        for key in ("message", "type", "code"):
            if not isinstance(error[key], str) or not error[key]:
                raise self.fail(f"error {key} must be a non-empty string")
        if self.phase == "open":
            raise self.fail("an error frame before the role chunk (send the role chunk first)")
        if self.phase != "body":
            raise self.fail(
                f"an error frame in phase {self.phase!r}: it may only interrupt "
                "the deltas (never after the final chunk, never twice)"
            )
        self.phase, self.error = "error", error

    def check_envelope(self, obj: dict[str, Any]) -> None:
        keys = set(obj)
        if keys - _ENVELOPE - {"usage"} or _ENVELOPE - keys:
            raise self.fail(f"chunk keys {sorted(keys)}; want {sorted(_ENVELOPE)} (+ usage)")
        if obj["object"] != "chat.completion.chunk":
            raise self.fail(f"object {obj['object']!r}; want 'chat.completion.chunk'")
        if not isinstance(obj["id"], str) or not obj["id"].startswith("chatcmpl-"):
            raise self.fail(f"id {obj['id']!r} does not start with 'chatcmpl-'")
        created = obj["created"]
        if not isinstance(created, int) or isinstance(created, bool):
            raise self.fail(f"created {created!r} is not an integer")
        if not isinstance(obj["model"], str) or not obj["model"]:
            raise self.fail("model must be a non-empty string")
        envelope = (obj["id"], created, obj["model"])
        if self.envelope is None:
            self.envelope = envelope
        elif envelope != self.envelope:
            raise self.fail(f"(id, created, model) {envelope} changed from {self.envelope}")
        if "usage" in obj and obj["choices"] != []:
            raise self.fail("usage on a delta chunk: usage goes in its own choices-[] chunk")

    def usage_chunk(self, obj: dict[str, Any]) -> None:
        if not self.include_usage:
            raise self.fail("a usage chunk, but the request did not ask for include_usage")
        if self.phase != "finished":
            raise self.fail(f"a usage chunk in phase {self.phase!r}: it follows the final chunk")
        usage = obj.get("usage")
        if not isinstance(usage, dict) or set(usage) != _USAGE_KEYS:
            raise self.fail(f"usage {usage!r}; want {sorted(_USAGE_KEYS)}")
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in usage.values()):
            raise self.fail(f"usage counts must be non-negative integers: {usage}")
        if usage["total_tokens"] != usage["prompt_tokens"] + usage["completion_tokens"]:
            raise self.fail(f"usage total_tokens is not prompt + completion: {usage}")
        self.phase, self.usage = "usage", usage

    def delta_chunk(self, obj: dict[str, Any]) -> None:
        choices = obj["choices"]
        if not isinstance(choices, list) or len(choices) != 1:
            raise self.fail("choices must hold exactly one choice (or none, for usage)")
        choice = choices[0]
        if not isinstance(choice, dict) or set(choice) != {"index", "delta", "finish_reason"}:
            raise self.fail(f"choice {choice!r}; want keys delta, finish_reason, index")
        if choice["index"] != 0 or not isinstance(choice["delta"], dict):
            raise self.fail("the choice must have index 0 and an object delta")
        delta, finish = choice["delta"], choice["finish_reason"]
        if self.phase == "open":
            if delta != _ROLE_DELTA or finish is not None:
                raise self.fail(f"the first chunk must be the role chunk {_ROLE_DELTA}")
            self.phase = "body"
        elif self.phase != "body":
            raise self.fail("a delta chunk after the final chunk")
        elif finish is not None:
            self.final(delta, finish)
        else:
            self.body_delta(delta)

    def final(self, delta: dict[str, Any], finish: Any) -> None:
        if delta:
            raise self.fail("the final chunk (with finish_reason) must have an empty delta")
        if finish not in _FINISH_REASONS:
            raise self.fail(f"finish_reason {finish!r}; want one of {sorted(_FINISH_REASONS)}")
        if (finish == "tool_calls") != bool(self.calls):
            raise self.fail(
                f"finish_reason {finish!r} with {len(self.calls)} tool call(s): "
                "tool_calls exactly when the stream carried tool calls"
            )
        self.phase, self.finish = "finished", finish

    def body_delta(self, delta: dict[str, Any]) -> None:
        if "role" in delta:
            raise self.fail("a role after the first chunk")
        if set(delta) == {"content"}:
            if not isinstance(delta["content"], str) or not delta["content"]:
                raise self.fail(f"content delta {delta['content']!r}: never send empty content")
            self.text.append(delta["content"])
        elif set(delta) == {"tool_calls"}:
            fragments = delta["tool_calls"]
            if not isinstance(fragments, list) or not fragments:
                raise self.fail("tool_calls must be a non-empty list")
            for fragment in fragments:
                self.tool_fragment(fragment)
        else:
            raise self.fail(f"delta {delta!r}: want content or tool_calls (or {{}} to finish)")

    def tool_fragment(self, fragment: Any) -> None:
        if not isinstance(fragment, dict):
            raise self.fail(f"tool call fragment {fragment!r} is not an object")
        index = fragment.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            raise self.fail(f"tool call fragment without an integer index: {fragment}")
        if index == len(self.calls):
            self.tool_header(fragment)
        elif 0 <= index < len(self.calls):
            function = fragment.get("function")
            if (
                set(fragment) != {"index", "function"}
                or not isinstance(function, dict)
                or (set(function) != {"arguments"})
            ):
                raise self.fail(
                    f"later fragment of call {index}: only index and "
                    f"function.arguments, got {fragment}"
                )
            if not isinstance(function["arguments"], str) or not function["arguments"]:
                raise self.fail(f"later fragment of call {index} has no argument text")
            self.calls[index]["arguments"] += function["arguments"]
        else:
            raise self.fail(
                f"tool call index {index} after {len(self.calls)} call(s): "
                "indexes are 0-based and consecutive"
            )

    def tool_header(self, fragment: dict[str, Any]) -> None:
        function = fragment.get("function")
        ok = (
            set(fragment) == {"index", "id", "type", "function"}
            and isinstance(fragment["id"], str)
            and fragment["id"]
            and fragment["type"] == "function"
            and isinstance(function, dict)
            and set(function) in ({"name"}, {"name", "arguments"})
            and isinstance(function["name"], str)
            and function["name"]
            and isinstance(function.get("arguments", ""), str)
        )
        if not ok:
            raise self.fail(
                f"first fragment of call {fragment.get('index')} needs index, id, "
                f"type 'function' and function.name: {fragment}"
            )
        assert isinstance(function, dict)
        self.calls.append(
            {
                "id": fragment["id"],
                "name": function["name"],
                "arguments": function.get("arguments", ""),
            }
        )

    def result(self) -> ParsedStream:
        if self.phase != "done":
            raise StreamLintError(None, None, "the body does not end with `data: [DONE]`")
        return ParsedStream(
            text="".join(self.text),
            tool_calls=tuple(ParsedToolCall(**call) for call in self.calls),
            finish_reason=self.finish,
            usage=self.usage,
            error=self.error,
            chunks=tuple(self.chunks),
            pings=self.pings,
        )
