"""The scripted LLM, the chunk builders and the error taxonomy (in-process, no HTTP)."""

from __future__ import annotations

import email.utils
import time
from contextlib import aclosing
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopwright.engine.errors import LLM_ERROR_CODES, LLMError
from loopwright.engine.llm_errors import llm_error_for, retry_after_seconds
from loopwright.engine.testing.chunks import (
    CallSpec,
    RawBytes,
    Response,
    ScriptExhaustedError,
    Status,
    completion_from_chunks,
    content_chunk,
    response_chunks,
    split_text,
    text_reply,
    tool_calls_reply,
)
from loopwright.engine.testing.scripted_llm import ScriptedLLM


async def chunks_of(llm: ScriptedLLM, body: dict[str, Any]) -> list[dict[str, Any]]:
    async with aclosing(llm.stream(body)) as stream:
        return [chunk async for chunk in stream]


async def test_responder_callable_sees_each_body_and_requests_are_recorded() -> None:
    llm = ScriptedLLM(lambda body: text_reply(f"echo {body['messages'][-1]['content']}", parts=2))
    messages = [{"role": "user", "content": "hi"}]
    body = {"model": "m", "messages": messages}
    chunks = await chunks_of(llm, body)
    messages.append({"role": "user", "content": "later"})  # the record is a copy
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo hi"
    assert llm.requests == [{"model": "m", "messages": [{"role": "user", "content": "hi"}]}]


async def test_a_list_script_runs_out_with_a_helpful_error() -> None:
    llm = ScriptedLLM([text_reply("one")])
    await chunks_of(llm, {})
    with pytest.raises(ScriptExhaustedError, match="1 response"):
        await chunks_of(llm, {})


async def test_status_must_be_the_first_step() -> None:
    llm = ScriptedLLM([Response(steps=(content_chunk("x"), Status(status=500)))])
    with pytest.raises(TypeError, match="first"):
        await chunks_of(llm, {})


async def test_raw_bytes_split_mid_frame_and_done() -> None:
    data = b'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: [DONE]\n\ndata: {"c": 3}\n\n'
    steps = tuple(RawBytes(data[i : i + 5]) for i in range(0, len(data), 5))
    llm = ScriptedLLM([Response(steps=steps, done=False)])
    assert await chunks_of(llm, {}) == [{"a": 1}, {"b": 2}]


async def test_raw_bytes_last_frame_without_blank_line() -> None:
    llm = ScriptedLLM([Response(steps=(RawBytes(b'data: {"a": 1}\n\ndata: {"b": 2}'),))])
    assert await chunks_of(llm, {}) == [{"a": 1}, {"b": 2}]


async def test_complete_builds_a_chat_completion() -> None:
    calls = [CallSpec(id="c1", name="f", arguments='{"x": 1}'), CallSpec(id="c2", name="g")]
    llm = ScriptedLLM([tool_calls_reply(calls, text="Checking.")])
    completion = await llm.complete({"model": "m", "messages": []})
    message = completion["choices"][0]["message"]
    assert message["content"] == "Checking."
    assert [
        (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]
    ] == [("c1", "f", '{"x": 1}'), ("c2", "g", "{}")]
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    assert completion["usage"]["total_tokens"] == 30


async def test_complete_raises_the_status_error() -> None:
    llm = ScriptedLLM([Response(steps=(Status(status=401),))])
    with pytest.raises(LLMError) as caught:
        await llm.complete({})
    assert (caught.value.code, caught.value.status) == ("auth", 401)


@given(st.text(max_size=50), st.integers(1, 10))
def test_split_text_keeps_the_text(text: str, parts: int) -> None:
    pieces = split_text(text, parts)
    assert "".join(pieces) == text
    assert all(pieces)
    assert len(pieces) <= parts


@given(st.text(min_size=1, max_size=30), st.integers(1, 5))
def test_completion_from_a_text_reply(text: str, parts: int) -> None:
    chunks = list(response_chunks(text_reply(text, parts=parts)))
    assert completion_from_chunks(chunks)["choices"][0]["message"]["content"] == text


@pytest.mark.parametrize(
    ("status", "error", "code", "retryable"),
    [
        (429, {"message": "slow"}, "rate_limited", True),
        (429, {"code": "insufficient_quota"}, "rate_limited", False),
        (400, {"code": "context_length_exceeded"}, "context_overflow", False),
        (
            400,
            {"message": "This model's maximum context length is 8192 tokens"},
            "context_overflow",
            False,
        ),
        (413, None, "context_overflow", False),
        (408, None, "timeout", True),
        (502, None, "server_error", True),
        (401, None, "auth", False),
        (418, None, "bad_request", False),
        (None, {"message": "?"}, "stream_error", True),
        (None, {"code": 429, "message": "busy"}, "rate_limited", True),
        (None, {"type": "overloaded_error"}, "server_error", True),
    ],
)
def test_taxonomy(status: int | None, error: Any, code: str, retryable: bool) -> None:
    err = llm_error_for(status, error)
    assert (err.code, err.retryable) == (code, retryable)
    assert err.code in LLM_ERROR_CODES


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after_seconds({"Retry-After": date}) or 0) <= 31
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None
