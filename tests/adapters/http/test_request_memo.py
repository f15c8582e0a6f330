"""Role-and-text messages seen before are reused: parsing never depends on what came before."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from loopwright.adapters.http import request as request_module
from loopwright.adapters.http.request import WireMessage, parse_chat_request
from loopwright.engine.testing.strategies import texts

plain = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "developer", "user", "assistant"]),
        "content": st.none() | texts(max_size=20) | st.sampled_from(["hi", "Okay.", ""]),
    }
)
ROLES = {"developer": "system"}


def body(messages: list[dict[str, object]]) -> bytes:
    return orjson.dumps({"model": "ava", "messages": messages})


@given(st.lists(plain, max_size=8), st.lists(plain, max_size=8))
def test_a_transcript_parses_the_same_whatever_was_parsed_before(
    before: list[dict[str, object]], transcript: list[dict[str, object]]
) -> None:
    parse_chat_request(body(before))
    got = parse_chat_request(body(transcript)).messages
    expected = tuple(
        WireMessage(role=ROLES.get(str(m["role"]), str(m["role"])), content=m["content"])
        for m in transcript
    )
    assert got == expected


def test_the_memo_stays_bounded_and_skips_long_texts() -> None:
    limit = request_module._SEEN_MAX
    many = [{"role": "user", "content": f"message {i}"} for i in range(limit + 10)]
    parse_chat_request(body(many))
    assert len(request_module._SEEN) <= limit
    long = "x" * (request_module._SEEN_TEXT + 1)
    parse_chat_request(body([{"role": "user", "content": long}]))
    assert ("user", long) not in request_module._SEEN
    again = parse_chat_request(body([{"role": "user", "content": "message 0"}] * 2)).messages
    assert again[0] is again[1]  # one message object for one role and text
