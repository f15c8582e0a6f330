"""The incremental SSE splitter: field rules, and any split of a stream gives the same frames."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loopwright.adapters.llm.sse import Frame, SSEDecoder


def decode(*reads: bytes) -> list[Frame]:
    decoder = SSEDecoder()
    frames = [frame for read in reads for frame in decoder.feed(read)]
    return frames + decoder.close()


def test_data_lines_event_names_and_comments() -> None:
    body = (
        b": OPENROUTER PROCESSING\n\n"
        b'data: {"a": 1}\n\n'
        b"event: error\ndata: first\ndata: second\n\n"
        b"data:no-space\n\n"
        b"data: [DONE]\n\n"
    )
    assert decode(body) == [
        (None, b'{"a": 1}'),
        ("error", b"first\nsecond"),
        (None, b"no-space"),
        (None, b"[DONE]"),
    ]


def test_crlf_and_a_crlf_split_between_reads() -> None:
    assert decode(b"data: x\r", b"\n\r\ndata: y\r\n\r\n") == [(None, b"x"), (None, b"y")]


def test_frame_without_trailing_blank_line_at_eof() -> None:
    assert decode(b"data: a\n\ndata: b") == [(None, b"a"), (None, b"b")]
    assert decode(b"data: a\n\ndata: b\n") == [(None, b"a"), (None, b"b")]


def test_unknown_fields_and_a_leading_space_are_ignored() -> None:
    # Corpus #27 starts with " data: {...}": a field named " data", which the spec ignores.
    assert decode(b' data: {"x": 1}\n\nid: 7\nretry: 10\ndata: y\n\n') == [(None, b"y")]


def test_event_name_resets_after_each_frame_and_empty_frames_are_skipped() -> None:
    assert decode(b"event: ping\n\n\n\nevent: error\ndata: e\n\ndata: d\n\n") == [
        ("error", b"e"),
        (None, b"d"),
    ]


def test_data_field_without_colon_is_an_empty_line() -> None:
    assert decode(b"data: a\ndata\n\n") == [(None, b"a\n")]


_value = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12).map(
    lambda s: s.encode()
)
_frame = st.tuples(
    st.none() | st.sampled_from(["error", "message", "ping"]),
    st.lists(_value, min_size=1, max_size=3),
    st.booleans(),  # a comment line before the frame
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[Frame]]:
    """A stream built from frames, with LF or CRLF line ends, and the frames it holds."""
    frames = draw(st.lists(_frame, max_size=6))
    out: list[bytes] = []
    expected: list[Frame] = []
    for event, lines, comment in frames:
        eol = draw(st.sampled_from([b"\n", b"\r\n"]))
        if comment:
            out.append(b": keep-alive" + eol)
        if event is not None:
            out.append(b"event: " + event.encode() + eol)
        out.extend(b"data: " + line + eol for line in lines)
        out.append(eol)
        expected.append((event, b"\n".join(lines)))
    open_end: bool = draw(st.booleans())
    if expected and open_end:
        out.pop()  # the last frame ends at EOF without its blank line
    return b"".join(out), expected


@given(streams(), st.lists(st.integers(0, 400), max_size=12))
def test_any_split_gives_the_frames_of_the_whole_stream(
    stream: tuple[bytes, list[Frame]], cuts: list[int]
) -> None:
    data, expected = stream
    points = sorted({min(c, len(data)) for c in cuts})
    reads = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert decode(data) == expected
    assert decode(*reads) == expected


@given(streams())
def test_byte_at_a_time(stream: tuple[bytes, list[Frame]]) -> None:
    data, expected = stream
    assert decode(*(data[i : i + 1] for i in range(len(data)))) == expected
