"""The SSE encoder and the completion builder on scripted event streams (and a real turn)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopwright.adapters.http.sse import (
    PING,
    CompletionError,
    KeepAlive,
    collect_completion,
    encode_stream,
)
from loopwright.engine.testing.strategies import texts
from loopwright.schemas import (
    ClientToolCall,
    Custom,
    Event,
    Retrying,
    RunFailed,
    RunFinished,
    RunStarted,
    StateEntered,
    TextDelta,
    ToolCallStarted,
    ToolResult,
    Usage,
)

from .lint import ParsedStream, lint_stream

ID, CREATED, MODEL = "chatcmpl-run-1", 1_700_000_000, "ada"
Item = Event


class Source:
    """Events from a list, then an optional exception; records how far it was read and closed."""

    def __init__(self, events: Sequence[Item], error: Exception | None = None) -> None:
        self.events, self.error = list(events), error
        self.pulled = 0
        self.closed = False

    def __aiter__(self) -> AsyncIterator[Item]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[Item]:
        try:
            for event in self.events:
                self.pulled += 1
                yield event
            if self.error is not None:
                raise self.error
        finally:
            self.closed = True


async def encode(source: Source | Sequence[Item], *, include_usage: bool = False) -> bytes:
    events = source if isinstance(source, Source) else Source(source)
    frames = [
        f
        async for f in encode_stream(
            events, model=MODEL, include_usage=include_usage, id=ID, created=CREATED
        )
    ]
    assert all(f.endswith(b"\n\n") for f in frames)
    return b"".join(frames)


async def linted(source: Source | Sequence[Item], *, include_usage: bool = False) -> ParsedStream:
    return lint_stream(
        await encode(source, include_usage=include_usage), include_usage=include_usage
    )


NOISE: list[Item] = [
    RunStarted("run-1", "low_latency_agent"),
    StateEntered("stream", 2),
    ToolCallStarted("call_9", "get_weather", '{"city": "Oslo"}'),
    ToolResult("call_9", "get_weather", "ok", '{"rain": true}'),
    Retrying("stream", 1, "rate_limited", 200),
    Custom("moderation", {"flagged": False}),
]


async def test_a_text_turn_is_role_content_final_usage_done() -> None:
    events = [
        NOISE[0],
        TextDelta("Hel"),
        TextDelta(""),
        Usage(7, 2, 9),
        TextDelta('lo "Ada"\n'),
        NOISE[1],
        Usage(1, 1, 2),
        RunFinished("final"),
    ]
    raw = await encode(events, include_usage=True)
    parsed = lint_stream(raw, include_usage=True)
    assert parsed.text == 'Hello "Ada"\n'
    assert parsed.finish_reason == "stop"
    assert parsed.usage == {"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}
    assert [list(c["choices"][0]["delta"]) if c["choices"] else "usage" for c in parsed.chunks] == [
        ["role", "content"],
        ["content"],
        ["content"],
        [],
        "usage",
    ]
    assert {(c["id"], c["created"], c["model"]) for c in parsed.chunks} == {(ID, CREATED, MODEL)}
    assert raw.count(b"data: ") == 6  # empty text made no frame


async def test_usage_chunk_only_when_asked_and_zero_without_usage_events() -> None:
    events: list[Item] = [TextDelta("Hi"), RunFinished("final")]
    assert (await linted(events)).usage is None
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert (await linted(events, include_usage=True)).usage == zero


@pytest.mark.parametrize("include_usage", [False, True])
async def test_a_turn_without_text_still_has_the_role_and_final_chunks(include_usage: bool) -> None:
    parsed = await linted([*NOISE, RunFinished("final")], include_usage=include_usage)
    assert (parsed.text, parsed.finish_reason, parsed.tool_calls) == ("", "stop", ())
    assert len(parsed.chunks) == (3 if include_usage else 2)


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("final", "stop"),
        ("max_steps", "length"),
        ("max_transitions", "length"),
        ("max_wall_time", "length"),
        ("handed_off", "stop"),
    ],
)
async def test_stop_reasons_map_to_finish_reasons(stop_reason: str, finish: str) -> None:
    parsed = await linted([TextDelta("x"), RunFinished(stop_reason)])
    assert parsed.finish_reason == finish


async def test_a_cancelled_run_ends_with_an_error_frame() -> None:
    parsed = await linted([TextDelta("x"), RunFinished("cancelled")], include_usage=True)
    assert parsed.error is not None
    assert parsed.error["code"] == "cancelled"
    assert "retry" in parsed.error["message"]


async def test_agent_tool_calls_are_hidden_and_client_calls_are_streamed() -> None:
    events = [
        NOISE[2],
        NOISE[3],
        TextDelta("Calling."),
        ClientToolCall(4, "c_a", "transfer", '{"to": "desk"}'),
        ClientToolCall(9, "c_b", "hang_up", "{}"),
        RunFinished("final"),
    ]
    raw = await encode(events)
    parsed = lint_stream(raw, include_usage=False)
    assert [(c.id, c.name, c.arguments) for c in parsed.tool_calls] == [
        ("c_a", "transfer", '{"to": "desk"}'),
        ("c_b", "hang_up", "{}"),
    ]
    assert parsed.finish_reason == "tool_calls"
    assert parsed.text == "Calling."
    assert b"get_weather" not in raw
    assert b"call_9" not in raw


@pytest.mark.parametrize(
    ("calls", "said"),
    [
        ([ClientToolCall(0, "", "end_call", "{}")], "must carry both"),
        ([ClientToolCall(0, "c_a", "", "{}")], "must carry both"),
        ([ClientToolCall(0, "c_a", "a"), ClientToolCall(0, "c_b", "b")], "sent twice"),
    ],
)
async def test_a_call_without_an_id_or_name_or_sent_twice_is_an_error_frame(
    calls: list[Item], said: str
) -> None:
    parsed = await linted([TextDelta("a"), *calls, RunFinished("final")])
    assert parsed.error is not None
    assert parsed.error["code"] == "stream_contract"
    assert said in parsed.error["message"]


@pytest.mark.parametrize("before", [[], [TextDelta("Half a "), TextDelta("sentence")]])
async def test_run_failed_is_an_error_frame_then_done(before: list[Item]) -> None:
    failed = RunFailed("rate_limited", "LLM request failed (rate_limited): slow down", True)
    source = Source([*before, failed, TextDelta("never read")])
    parsed = await linted(source, include_usage=True)
    assert parsed.text == "".join(e.text for e in before if isinstance(e, TextDelta))
    assert parsed.error == {
        "message": failed.message,
        "type": "rate_limit_error",
        "code": "rate_limited",
    }
    assert source.pulled == len(before) + 1
    assert source.closed


@pytest.mark.parametrize("after_text", [False, True])
async def test_an_exception_from_the_events_is_an_error_frame_and_logged(
    after_text: bool, caplog: pytest.LogCaptureFixture
) -> None:
    source = Source(
        [TextDelta("Hi")] if after_text else [], OSError("database at /secret/path is gone")
    )
    with caplog.at_level(logging.ERROR, logger="loopwright.adapters.http.sse"):
        parsed = await linted(source)
    assert parsed.text == ("Hi" if after_text else "")
    assert parsed.error is not None
    assert parsed.error["code"] == "internal_error"
    assert "OSError" in parsed.error["message"]
    assert "/secret/path" not in parsed.error["message"]  # details stay in the log
    assert any("secret/path" in r.exc_text for r in caplog.records if r.exc_text)


async def test_events_ending_without_a_terminal_event_are_an_error_frame() -> None:
    parsed = await linted([TextDelta("Hi")])
    assert parsed.error is not None
    assert parsed.error["code"] == "incomplete_run"


async def test_text_that_cannot_be_encoded_is_an_error_frame() -> None:
    parsed = await linted([TextDelta("ok"), TextDelta("\ud800"), RunFinished("final")])
    assert parsed.text == "ok"
    assert parsed.error is not None


async def test_a_bad_id_fails_before_the_first_byte() -> None:
    frames = encode_stream(Source([]), model=MODEL, include_usage=False, id="run-1", created=0)
    with pytest.raises(ValueError, match="must start with 'chatcmpl-'"):
        await anext(frames)


async def test_closing_the_stream_early_closes_the_events() -> None:
    source = Source([TextDelta("a"), TextDelta("b"), RunFinished("final")])
    frames = encode_stream(source, model=MODEL, include_usage=False, id=ID, created=CREATED)
    await anext(frames)  # the role chunk, sent before any event is read
    assert source.pulled == 0
    await anext(frames)
    await frames.aclose()  # type: ignore[attr-defined]
    assert source.closed
    assert source.pulled == 1


async def test_a_source_that_fails_to_close_still_gives_a_complete_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unclosable:
        def __init__(self) -> None:
            self.events: Iterator[Item] = iter([TextDelta("Hi"), RunFinished("final")])

        def __aiter__(self) -> Unclosable:
            return self

        async def __anext__(self) -> Item:
            return next(self.events)

        async def aclose(self) -> None:
            raise RuntimeError("store gone while closing")

    frames = encode_stream(Unclosable(), model=MODEL, include_usage=False, id=ID, created=CREATED)
    with caplog.at_level(logging.ERROR, logger="loopwright.adapters.http.sse"):
        raw = b"".join([frame async for frame in frames])
    assert lint_stream(raw, include_usage=False).text == "Hi"
    assert "store gone while closing" in caplog.text


async def test_cancellation_propagates_without_an_error_frame() -> None:
    started, sent = asyncio.Event(), []

    async def stalled() -> AsyncIterator[Item]:
        yield TextDelta("a")
        started.set()
        await asyncio.sleep(60)
        yield RunFinished("final")

    async def consume() -> None:
        async for frame in encode_stream(
            stalled(), model=MODEL, include_usage=False, id=ID, created=CREATED
        ):
            sent.append(frame)

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(sent) == 2
    assert not any(b'"error"' in f or b"[DONE]" in f for f in sent)


# -- properties over random event sequences -------------------------------------------------

ENDS = ["final", "max_steps", "cancelled", "custom", "failed", "raise", "none"]


@st.composite
def turns(draw: st.DrawFn) -> tuple[list[Item], str, Exception | None]:
    """Any events (text, usage, noise, whole client calls), then one of the possible ends."""
    events: list[Item] = []
    calls = 0
    for kind in draw(st.lists(st.sampled_from(["text", "usage", "noise", "call"]), max_size=20)):
        if kind == "text":
            events.append(TextDelta(draw(texts(nul=True, max_size=6))))
        elif kind == "usage":
            p, c = draw(st.integers(0, 999)), draw(st.integers(0, 999))
            events.append(Usage(p, c, p + c))
        elif kind == "noise":
            events.append(draw(st.sampled_from(NOISE)))
        else:
            name = draw(st.sampled_from(["a", "b"]))
            events.append(ClientToolCall(calls, f"call_{calls}", name, draw(texts(max_size=8))))
            calls += 1
    end = draw(st.sampled_from(ENDS))
    error = RuntimeError("source broke") if end == "raise" else None
    if end == "failed":
        events.append(RunFailed("server_error", "the provider failed; retry later"))
    elif end not in ("raise", "none"):
        events.append(RunFinished(end))
    return events, end, error


def expected_calls(events: Sequence[Item]) -> list[tuple[str, str, str]]:
    return [(e.id, e.name, e.arguments) for e in events if isinstance(e, ClientToolCall)]


@given(turns(), st.booleans())
async def test_any_event_sequence_encodes_to_a_lint_clean_stream(
    turn: tuple[list[Item], str, Exception | None], include_usage: bool
) -> None:
    events, end, error = turn
    parsed = await linted(Source(events, error), include_usage=include_usage)
    assert parsed.text == "".join(e.text for e in events if isinstance(e, TextDelta))
    if end in ("final", "max_steps", "custom"):
        calls = expected_calls(events)
        assert [(c.id, c.name, c.arguments) for c in parsed.tool_calls] == calls
        want = "tool_calls" if calls else "length" if end == "max_steps" else "stop"
        assert parsed.finish_reason == want
        total = sum(e.total_tokens for e in events if isinstance(e, Usage))
        assert (parsed.usage or {}).get("total_tokens", total) == total
        assert parsed.error is None
    else:
        assert parsed.error is not None
        codes = {"failed": "server_error", "raise": "internal_error", "none": "incomplete_run"}
        assert parsed.error["code"] == codes.get(end, end)


@given(turns())
async def test_the_completion_holds_what_the_stream_carries(
    turn: tuple[list[Item], str, Exception | None],
) -> None:
    events, end, error = turn
    if end == "raise":
        with pytest.raises(RuntimeError, match="source broke"):
            await collect_completion(Source(events, error), model=MODEL, id=ID, created=CREATED)
        return
    if end in ("cancelled", "failed", "none"):
        with pytest.raises(CompletionError) as info:
            await collect_completion(Source(events), model=MODEL, id=ID, created=CREATED)
        code, status = {
            "failed": ("server_error", 500),
            "cancelled": ("cancelled", 503),
            "none": ("incomplete_run", 500),
        }[end]
        assert (info.value.body["error"]["code"], info.value.status) == (code, status)
        return
    parsed = await linted(Source(events), include_usage=True)
    completion = await collect_completion(Source(events), model=MODEL, id=ID, created=CREATED)
    choice = completion["choices"][0]
    message = choice["message"]
    assert (message["content"] or "") == parsed.text
    assert [
        (c["id"], c["function"]["name"], c["function"]["arguments"])
        for c in message.get("tool_calls", [])
    ] == [(c.id, c.name, c.arguments) for c in parsed.tool_calls]
    assert choice["finish_reason"] == parsed.finish_reason
    assert completion["usage"] == parsed.usage
    assert (completion["id"], completion["created"], completion["model"]) == (ID, CREATED, MODEL)
    json.dumps(completion)  # plain JSON data


async def test_a_failed_completion_carries_status_and_body() -> None:
    with pytest.raises(CompletionError) as info:
        await collect_completion(
            Source([TextDelta("x"), RunFailed("bad_request", "fix it")]),
            model=MODEL,
            id=ID,
            created=CREATED,
        )
    assert info.value.status == 400
    assert info.value.body == {
        "error": {"message": "fix it", "type": "invalid_request_error", "code": "bad_request"}
    }


# -- keep-alive ------------------------------------------------------------------------------


async def test_keepalive_pings_only_while_idle() -> None:
    loop = asyncio.get_running_loop()
    sent: list[tuple[float, bytes]] = []

    async def send(frame: bytes) -> None:
        sent.append((loop.time(), frame))

    async with KeepAlive(send, interval=0.03) as keep:
        await keep.send(b"data: 1\n\n")
        await asyncio.sleep(0.1)  # idle: pings
        await keep.send(b"data: 2\n\n")
    assert keep.pings >= 1
    assert [f for _, f in sent if f != PING] == [b"data: 1\n\n", b"data: 2\n\n"]
    for (before, _), (at, frame) in itertools.pairwise(sent):
        if frame == PING:
            assert at - before >= 0.03 - 1e-3  # never sooner than the interval after a frame


async def test_keepalive_never_pings_beside_a_slow_frame() -> None:
    in_flight, pings_in_flight, sent = False, 0, []

    async def send(frame: bytes) -> None:
        nonlocal in_flight, pings_in_flight
        if frame == PING:
            pings_in_flight += in_flight
        else:
            in_flight = True
            await asyncio.sleep(0.1)  # a slow client: 5 intervals for one frame
            in_flight = False
        sent.append(frame)

    async with KeepAlive(send, interval=0.02) as keep:
        await keep.send(b"data: 1\n\n")
        await asyncio.sleep(0.06)
    assert pings_in_flight == 0
    assert sent[0] == b"data: 1\n\n"
    assert keep.pings >= 1
    assert sent[1:] == [PING] * keep.pings


async def test_a_failed_ping_stops_the_pings_quietly() -> None:
    sent: list[bytes] = []

    async def send(frame: bytes) -> None:
        if frame == PING:
            raise ConnectionResetError("client went away")
        sent.append(frame)

    async with KeepAlive(send, interval=0.01) as keep:
        await asyncio.sleep(0.04)
        await keep.send(b"data: 1\n\n")  # the frame path is unaffected
    assert (keep.pings, sent) == (0, [b"data: 1\n\n"])
    with pytest.raises(ValueError, match="positive"):
        KeepAlive(send, interval=0)
