"""KeyStreamer: exact, in-order, incremental and never throwing, whatever the fragments."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopwright.workflows.agent.partial_json import KeyStreamer

KEY = "pre_exec_msg"

_keys = st.one_of(st.text(max_size=8), st.just(KEY))
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_keys, children, max_size=3),
    max_leaves=8,
)


@st.composite
def objects_with_key(draw: st.DrawFn, value: st.SearchStrategy[Any]) -> tuple[dict[str, Any], Any]:
    """A JSON object holding KEY at a random position (and maybe nested, or as a value)."""
    others = draw(st.lists(st.tuples(_keys.filter(lambda k: k != KEY), _json_values), max_size=5))
    chosen = draw(value)
    at = draw(st.integers(min_value=0, max_value=len(others)))
    pairs = [*others[:at], (KEY, chosen), *others[at:]]
    return dict(pairs), chosen


@st.composite
def serialised(draw: st.DrawFn, obj: Any) -> str:
    """`obj` as JSON in one of the ways models and SDKs write it."""
    style = draw(st.sampled_from(["default", "compact", "indented"]))
    ensure_ascii = draw(st.booleans())
    if style == "compact":
        return json.dumps(obj, ensure_ascii=ensure_ascii, separators=(",", ":"))
    return json.dumps(obj, ensure_ascii=ensure_ascii, indent=2 if style == "indented" else None)


@st.composite
def split(draw: st.DrawFn, text: str) -> list[str]:
    """`text` cut into fragments at random points (fragments may be empty)."""
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(text)), max_size=30)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def stream(fragments: list[str], key: str = KEY) -> list[str]:
    reader = KeyStreamer(key)
    pieces = [reader.feed(fragment) for fragment in fragments]
    assert reader.value == "".join(pieces)
    return pieces


@given(data=st.data())
def test_pieces_concatenate_to_the_decoded_value(data: st.DataObject) -> None:
    obj, value = data.draw(objects_with_key(st.text()))
    text = data.draw(serialised(obj))
    assert "".join(stream(data.draw(split(text)))) == value


@given(data=st.data())
def test_one_character_at_a_time(data: st.DataObject) -> None:
    obj, value = data.draw(objects_with_key(st.text()))
    text = data.draw(serialised(obj))
    assert "".join(stream(list(text))) == value


@given(data=st.data())
def test_a_non_string_value_emits_nothing(data: st.DataObject) -> None:
    obj, _ = data.draw(objects_with_key(_json_values.filter(lambda v: not isinstance(v, str))))
    text = data.draw(serialised(obj))
    assert "".join(stream(data.draw(split(text)))) == ""


@given(data=st.data())
def test_an_absent_key_emits_nothing(data: st.DataObject) -> None:
    # The key may still appear nested or as a string value: neither is the top-level key.
    obj = data.draw(st.dictionaries(_keys.filter(lambda k: k != KEY), _json_values, max_size=5))
    obj["other"] = {KEY: "nested"}
    obj["as_value"] = KEY
    text = data.draw(serialised(obj))
    assert "".join(stream(data.draw(split(text)))) == ""


@given(fragments=st.lists(st.text(), max_size=20))
def test_never_throws_on_arbitrary_text(fragments: list[str]) -> None:
    assert all(isinstance(piece, str) for piece in stream(fragments))


@given(data=st.data())
def test_never_throws_on_corrupted_json(data: st.DataObject) -> None:
    obj, _ = data.draw(objects_with_key(st.text()))
    text = data.draw(serialised(obj))
    noise = st.sampled_from(['"', "\\", "\\u", "\\ud83d", "{", "}", "[", "]", ":", ",", "x"])
    for _ in range(data.draw(st.integers(min_value=1, max_value=5))):
        at = data.draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:at] + data.draw(noise) + text[at:]
    assert all(isinstance(piece, str) for piece in stream(data.draw(split(text))))


def test_an_escape_split_anywhere_is_held_until_complete() -> None:
    value = 'a"\\/\b\f\n\r\té\u2028😀z'
    text = json.dumps({"x": [1, {"y": "\\"}], KEY: value, "z": 0}, ensure_ascii=True)
    for cut in range(len(text) + 1):
        pieces = stream([text[:cut], text[cut:]])
        assert "".join(pieces) == value, cut
        # Every piece is a whole decoded prefix step: no backslash or half a pair leaks out.
        for piece in pieces:
            assert not any(0xD800 <= ord(char) <= 0xDFFF for char in piece)


def test_text_streams_out_as_it_arrives() -> None:
    reader = KeyStreamer(KEY)
    assert reader.feed('{"city": "Oslo", "pre_exec') == ""
    assert reader.feed('_msg": "Let me ') == "Let me "
    assert not reader.complete
    assert reader.feed("check\\") == "check"
    assert reader.feed("n the wea") == "\n the wea"
    assert reader.feed('ther."') == "ther."
    assert reader.complete
    assert reader.feed(', "pre_exec_msg": "again"}') == ""
    assert reader.value == "Let me check\n the weather."


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("\\ud83d", "\ufffd"),  # lone high surrogate
        ("\\ude00", "\ufffd"),  # lone low surrogate
        ("\\ud83dx", "\ufffdx"),
        ("\\ud83d\\u0041", "\ufffdA"),
        ("\\uzzzz", "\ufffdzzzz"),  # invalid hex digits
        ("\\q", "q"),  # unknown escape
    ],
)
def test_invalid_escapes_decode_leniently(raw: str, decoded: str) -> None:
    text = '{"' + KEY + '": "' + raw + '"}'
    assert "".join(stream([text])) == decoded
    assert "".join(stream(list(text))) == decoded


def test_a_key_written_with_escapes_matches() -> None:
    text = '{"pre\\u005fexec_msg": "hi"}'
    assert "".join(stream(list(text))) == "hi"


def _seconds_per_fragment(text: str, repeat: int) -> float:
    fragments = [text[i : i + 10] for i in range(0, len(text), 10)]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeat):
            reader = KeyStreamer(KEY)
            for fragment in fragments:
                reader.feed(fragment)
        best = min(best, (time.perf_counter() - started) / (repeat * len(fragments)))
    return best


def test_cost_per_fragment_does_not_grow_with_the_input() -> None:
    # 20,000 fragments either way; a reader that re-parsed from the start on every fragment
    # would spend ~100x more per fragment on the 100x longer document.
    short = json.dumps({"a": 1, KEY: "word " * 400})
    long = json.dumps({"a": 1, KEY: "word " * 40_000})
    ratio = _seconds_per_fragment(long, 1) / _seconds_per_fragment(short, 100)
    assert ratio < 5
