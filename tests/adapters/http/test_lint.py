"""The stream linter on hand-written streams: good ones pass, each rule has a failing example."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .lint import ParsedToolCall, StreamLintError, lint_stream

ENVELOPE = {"id": "chatcmpl-t1", "object": "chat.completion.chunk", "created": 7, "model": "ada"}
DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None, **override: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {**ENVELOPE, "choices": [choice], **override}


def usage(prompt: int = 3, completion: int = 2, total: int | None = None) -> dict[str, Any]:
    total = prompt + completion if total is None else total
    counts = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    return {**ENVELOPE, "choices": [], "usage": counts}


def header(index: int, id: str = "call_1", name: str = "lookup", args: str = "") -> dict[str, Any]:
    call = {
        "index": index,
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": args},
    }
    return chunk({"tool_calls": [call]})


def args(index: int, text: str) -> dict[str, Any]:
    return chunk({"tool_calls": [{"index": index, "function": {"arguments": text}}]})


def error(message: str = "boom", type: str = "server_error", code: str = "x") -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "code": code}}


ROLE = chunk({"role": "assistant", "content": ""})
STOP = chunk({}, "stop")


def stream(*parts: dict[str, Any] | bytes) -> bytes:
    return b"".join(
        p if isinstance(p, bytes) else b"data: " + json.dumps(p).encode() + b"\n\n" for p in parts
    )


def test_a_text_stream_with_pings_and_usage_parses() -> None:
    raw = stream(
        PING,
        ROLE,
        chunk({"content": "Hel"}),
        PING,
        chunk({"content": "lo"}),
        STOP,
        usage(3, 2),
        DONE,
    )
    parsed = lint_stream(raw, include_usage=True)
    assert parsed.text == "Hello"
    assert parsed.finish_reason == "stop"
    assert parsed.usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert (parsed.error, parsed.tool_calls, parsed.pings) == (None, (), 2)
    assert len(parsed.chunks) == 5


def test_an_empty_turn_and_a_length_stop_parse() -> None:
    parsed = lint_stream(stream(ROLE, chunk({}, "length"), DONE), include_usage=False)
    assert (parsed.text, parsed.finish_reason, parsed.usage) == ("", "length", None)


def test_parallel_tool_calls_reassemble() -> None:
    raw = stream(
        ROLE,
        chunk({"content": "On it."}),
        header(0, "c0", "a", '{"x"'),
        args(0, ":1}"),
        header(1, "c1", "b"),
        args(1, "{}"),
        chunk({}, "tool_calls"),
        DONE,
    )
    parsed = lint_stream(raw, include_usage=False)
    assert parsed.tool_calls == (
        ParsedToolCall(id="c0", name="a", arguments='{"x":1}'),
        ParsedToolCall(id="c1", name="b", arguments="{}"),
    )
    assert parsed.finish_reason == "tool_calls"


def test_an_error_stream_parses_with_its_error() -> None:
    raw = stream(ROLE, chunk({"content": "Half"}), error("cut off", code="stream_error"), DONE)
    parsed = lint_stream(raw, include_usage=True)
    assert parsed.text == "Half"
    assert parsed.error == {"message": "cut off", "type": "server_error", "code": "stream_error"}
    assert (parsed.finish_reason, parsed.usage) == (None, None)


GOOD = [ROLE, chunk({"content": "Hi"}), STOP]

# (case, body, include_usage, frame named in the message or None, words of the message)
BAD: list[tuple[str, bytes, bool, int | None, str]] = [
    ("empty body", b"", False, None, "empty body"),
    ("truncated frame", stream(*GOOD) + b'data: {"id"', False, 4, "ends inside a frame"),
    ("no [DONE]", stream(*GOOD), False, None, "does not end with `data: [DONE]`"),
    ("two [DONE]", stream(*GOOD, DONE, DONE), False, 5, "after `data: [DONE]`"),
    ("ping after [DONE]", stream(*GOOD, DONE, PING), False, 5, "after `data: [DONE]`"),
    ("event-only frame", stream(ROLE, b"event: error\n\n", STOP, DONE), False, 2, "`event:`"),
    ("event field", stream(ROLE, b"event: message\ndata: {}\n\n"), False, 2, "several lines"),
    ("empty data", stream(ROLE, b"data: \n\n", STOP, DONE), False, 2, "empty `data:`"),
    ("bare data", stream(ROLE, b"data:\n\n", STOP, DONE), False, 2, "empty `data:`"),
    ("stray blank line", stream(ROLE) + b"\n\n" + stream(STOP, DONE), False, 2, "empty frame"),
    ("CRLF", stream(ROLE).replace(b"\n\n", b"\r\n\r\n") + stream(STOP, DONE), False, 1, "CR"),
    ("unknown field", stream(ROLE, b"id: 3\n\n", STOP, DONE), False, 2, "nor a `:` comment"),
    ("not JSON", stream(ROLE, b"data: {oops\n\n", STOP, DONE), False, 2, "not JSON"),
    ("JSON array", stream(ROLE, b"data: [1]\n\n", STOP, DONE), False, 2, "not an object"),
    ("no role chunk", stream(chunk({"content": "Hi"}), STOP, DONE), False, 1, "role chunk"),
    (
        "role without content",
        stream(chunk({"role": "assistant"}), STOP, DONE),
        False,
        1,
        "role chunk",
    ),
    ("role twice", stream(*GOOD[:2], ROLE, STOP, DONE), False, 3, "role after the first"),
    (
        "empty content",
        stream(ROLE, chunk({"content": ""}), STOP, DONE),
        False,
        2,
        "never send empty content",
    ),
    (
        "null content",
        stream(ROLE, chunk({"content": None}), STOP, DONE),
        False,
        2,
        "never send empty content",
    ),
    (
        "refusal delta",
        stream(ROLE, chunk({"refusal": "no"}), STOP, DONE),
        False,
        2,
        "want content or tool_calls",
    ),
    (
        "empty delta, no finish",
        stream(ROLE, chunk({}), STOP, DONE),
        False,
        2,
        "want content or tool_calls",
    ),
    (
        "id changes",
        stream(ROLE, chunk({"content": "a"}, id="chatcmpl-t2"), STOP, DONE),
        False,
        2,
        "changed",
    ),
    (
        "created changes",
        stream(ROLE, chunk({"content": "a"}, created=8), STOP, DONE),
        False,
        2,
        "changed",
    ),
    (
        "model changes",
        stream(ROLE, chunk({"content": "a"}, model="bob"), STOP, DONE),
        False,
        2,
        "changed",
    ),
    (
        "id prefix",
        stream(chunk({"role": "assistant", "content": ""}, id="cmpl-1")),
        False,
        1,
        "chatcmpl-",
    ),
    (
        "created not int",
        stream(chunk({"role": "assistant", "content": ""}, created="7")),
        False,
        1,
        "not an integer",
    ),
    (
        "object",
        stream(chunk({"role": "assistant", "content": ""}, object="chat.completion")),
        False,
        1,
        "want 'chat.completion.chunk'",
    ),
    (
        "extra key",
        stream(chunk({"role": "assistant", "content": ""}, x_groq={})),
        False,
        1,
        "chunk keys",
    ),
    (
        "missing key",
        stream({k: v for k, v in ROLE.items() if k != "model"}),
        False,
        1,
        "chunk keys",
    ),
    (
        "two choices",
        stream(ROLE, {**STOP, "choices": STOP["choices"] * 2}, DONE),
        False,
        2,
        "exactly one choice",
    ),
    (
        "choice index 1",
        stream(ROLE, {**STOP, "choices": [{**STOP["choices"][0], "index": 1}]}, DONE),
        False,
        2,
        "index 0",
    ),
    (
        "logprobs key",
        stream(ROLE, {**STOP, "choices": [{**STOP["choices"][0], "logprobs": None}]}, DONE),
        False,
        2,
        "want keys",
    ),
    (
        "finish on content",
        stream(ROLE, chunk({"content": "a"}, "stop"), DONE),
        False,
        2,
        "empty delta",
    ),
    ("no final chunk", stream(*GOOD[:2], DONE), False, 3, "before the final chunk"),
    ("two final chunks", stream(*GOOD, STOP, DONE), False, 4, "after the final chunk"),
    (
        "content after final",
        stream(*GOOD, chunk({"content": "a"}), DONE),
        False,
        4,
        "after the final chunk",
    ),
    (
        "unknown finish reason",
        stream(ROLE, chunk({}, "content_filter"), DONE),
        False,
        2,
        "finish_reason 'content_filter'",
    ),
    (
        "tool_calls without calls",
        stream(ROLE, chunk({}, "tool_calls"), DONE),
        False,
        2,
        "0 tool call(s)",
    ),
    ("stop with calls", stream(ROLE, header(0), STOP, DONE), False, 3, "1 tool call(s)"),
    (
        "first index 1",
        stream(ROLE, header(1), chunk({}, "tool_calls"), DONE),
        False,
        2,
        "0-based and consecutive",
    ),
    (
        "index skips",
        stream(ROLE, header(0), header(2, "c2"), chunk({}, "tool_calls"), DONE),
        False,
        3,
        "0-based and consecutive",
    ),
    (
        "header without id",
        stream(
            ROLE,
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "type": "function", "function": {"name": "a", "arguments": ""}}
                    ]
                }
            ),
        ),
        False,
        2,
        "needs index, id",
    ),
    (
        "header without type",
        stream(ROLE, chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "a"}}]})),
        False,
        2,
        "needs index, id",
    ),
    ("header without name", stream(ROLE, header(0, name="")), False, 2, "needs index, id"),
    (
        "no index",
        stream(
            ROLE,
            chunk({"tool_calls": [{"id": "c", "type": "function", "function": {"name": "a"}}]}),
        ),
        False,
        2,
        "integer index",
    ),
    (
        "id repeated later",
        stream(
            ROLE,
            header(0),
            chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"arguments": "{}"}}]}),
        ),
        False,
        3,
        "only index and function.arguments",
    ),
    (
        "name repeated later",
        stream(
            ROLE,
            header(0),
            chunk(
                {"tool_calls": [{"index": 0, "function": {"name": "lookup", "arguments": "{}"}}]}
            ),
        ),
        False,
        3,
        "only index and function.arguments",
    ),
    ("empty later args", stream(ROLE, header(0), args(0, "")), False, 3, "no argument text"),
    ("empty tool_calls", stream(ROLE, chunk({"tool_calls": []})), False, 2, "non-empty list"),
    ("usage not asked", stream(*GOOD, usage(), DONE), False, 4, "did not ask"),
    ("usage missing", stream(*GOOD, DONE), True, 4, "without the usage chunk"),
    (
        "usage before final",
        stream(*GOOD[:2], usage(), STOP, DONE),
        True,
        3,
        "follows the final chunk",
    ),
    ("usage twice", stream(*GOOD, usage(), usage(), DONE), True, 5, "follows the final chunk"),
    ("usage total", stream(*GOOD, usage(3, 2, 6), DONE), True, 4, "not prompt + completion"),
    ("usage negative", stream(*GOOD, usage(-1, 2), DONE), True, 4, "non-negative"),
    (
        "usage keys",
        stream(*GOOD, {**usage(), "usage": {"total_tokens": 1}}, DONE),
        True,
        4,
        "want ['completion_tokens'",
    ),
    (
        "usage on a delta",
        stream(ROLE, chunk({"content": "a"}, usage=None), STOP, DONE),
        False,
        2,
        "usage on a delta chunk",
    ),
    ("error before role", stream(error(), DONE), False, 1, "before the role chunk"),
    (
        "error without type",
        stream(ROLE, {"error": {"message": "m", "code": "c"}}, DONE),
        False,
        2,
        "want code, message, type",
    ),
    (
        "error with empty message",
        stream(ROLE, error(message=""), DONE),
        False,
        2,
        "message must be a non-empty string",
    ),
    (
        "error in a chunk",
        stream(ROLE, {**chunk({"content": "a"}), **error()}, DONE),
        False,
        2,
        'exactly {"error"',
    ),
    (
        "chunk after error",
        stream(ROLE, error(), chunk({"content": "a"}), DONE),
        False,
        3,
        "after the error frame",
    ),
    ("two errors", stream(ROLE, error(), error(), DONE), False, 3, "never twice"),
    ("error after final", stream(*GOOD, error(), DONE), False, 4, "after the final chunk"),
    ("error without [DONE]", stream(ROLE, error()), False, None, "does not end with"),
]


@pytest.mark.parametrize(
    ("body", "include_usage", "frame", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD],
)
def test_each_rule_fails_naming_the_frame(
    body: bytes, include_usage: bool, frame: int | None, words: str
) -> None:
    with pytest.raises(StreamLintError) as info:
        lint_stream(body, include_usage=include_usage)
    assert info.value.number == frame, str(info.value)
    assert words in str(info.value)
    prefix = "stream: " if frame is None else f"frame {frame} b"
    assert str(info.value).startswith(prefix)
