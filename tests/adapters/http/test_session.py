"""Session keys: the client's own identifier when it gives one, else a stable transcript hash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopwright.adapters.http.request import ChatRequest, WireMessage, parse_chat_request
from loopwright.adapters.http.session import session_key
from loopwright.engine.testing.strategies import texts

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus" / "client-requests"
LIVEKIT_HEADERS: dict[str, str] = json.loads(
    (CORPUS / "livekit-1.8.9-captured-request-headers.json").read_text()
)["headers"]


def key(headers: dict[str, str] | None = None, **fields: Any) -> str:
    body = {"model": "ada", "messages": [{"role": "user", "content": "hi"}], **fields}
    return session_key(headers or {}, parse_chat_request(orjson.dumps(body)))


EVERYTHING: dict[str, Any] = {
    "call": {"id": "call-9", "callId": "old-9"},
    "user": "u-1",
}
HEADERS = {"X-LiveKit-Session-ID": "lk-1", "X-OpenWebUI-Chat-Id": "chat-1"}


def test_order_of_sources() -> None:
    assert key(HEADERS, **EVERYTHING) == "livekit:lk-1"
    assert key({"X-OpenWebUI-Chat-Id": "chat-1"}, **EVERYTHING) == "owui:chat-1"
    assert key({}, **EVERYTHING) == "call:call-9"
    assert key({}, call={"callId": "old-9"}, user="u-1") == "call:old-9"
    assert key({}, call={"type": "webCall"}, user="u-1") == "user:u-1"
    assert key({}, user={"id": "u-2", "name": "Ada"}) == "user:u-2"
    assert key({}).startswith("hash:")


@pytest.mark.parametrize("spell", [str, str.lower, str.upper])
def test_header_names_are_case_insensitive(spell: Any) -> None:
    assert key({spell("X-LiveKit-Session-ID"): "lk-1"}) == "livekit:lk-1"
    assert key({spell("X-OpenWebUI-Chat-Id"): "c-1"}) == "owui:c-1"


def test_blank_identifiers_are_skipped() -> None:
    headers = {"X-LiveKit-Session-ID": "  ", "X-OpenWebUI-Chat-Id": ""}
    assert key(headers, call={"id": "", "callId": None}, user="").startswith("hash:")
    assert key({}, call={"id": True}, user={"id": ["x"]}).startswith("hash:")
    assert key({}, call={"id": 42}) == "call:42"


def test_long_or_unprintable_identifiers_are_hashed() -> None:
    long = key({"X-LiveKit-Session-ID": "x" * 500})
    assert long.startswith("livekit:") and len(long) < 40
    assert long != key({"X-LiveKit-Session-ID": "x" * 501})
    assert key({}, user="a\x00b") != key({}, user="a\x00c")
    assert "\x00" not in key({}, user="a\x00b")


def test_corpus_sessions() -> None:
    def of(name: str, headers: dict[str, str] | None = None) -> str:
        return session_key(headers or {}, parse_chat_request((CORPUS / name).read_bytes()))

    vapi = of("vapi-legacy-webcall-functions-recorded-2024.json")
    assert vapi == "call:e5027f82-41b8-4b2c-9228-e5f0e88edbf3"
    assert of("livekit-1.8.9-captured-all-options.json") == "user:user-42"
    text_turn = of("livekit-1.8.9-captured-text-turn.json", LIVEKIT_HEADERS)
    assert text_turn.startswith("hash:")
    # The turn after the tool call belongs to the same conversation.
    assert of("livekit-1.8.9-captured-tool-result-followup.json") == text_turn
    inside_a_job = {**LIVEKIT_HEADERS, "X-LiveKit-Session-ID": "AJ_abc"}
    assert of("livekit-1.8.9-captured-text-turn.json", inside_a_job) == "livekit:AJ_abc"


roles = st.sampled_from(["system", "user", "assistant", "tool"])
messages = st.builds(WireMessage, role=roles, content=st.none() | texts(max_size=8))


def hash_key(transcript: list[WireMessage]) -> str:
    return session_key({}, ChatRequest(model="ada", messages=tuple(transcript)))


@given(st.lists(messages, max_size=6), st.lists(messages, max_size=6))
def test_hash_is_stable_as_the_transcript_grows(
    opening: list[WireMessage], later: list[WireMessage]
) -> None:
    if not any(m.role != "system" for m in opening):
        opening = [*opening, WireMessage(role="assistant", content="Hello!")]
    assert hash_key(opening) == hash_key(opening + later)


def test_hash_ignores_a_later_system_message() -> None:
    opening = [WireMessage(role="user", content="hi")]
    assert hash_key(opening) == hash_key(
        [*opening, WireMessage(role="system", content="Be brief.")]
    )
    with_prompt = [WireMessage(role="system", content=""), *opening]
    assert hash_key(with_prompt) != hash_key(opening), "an empty prompt is still a prompt"


@given(texts(), texts(), texts(), texts())
def test_hash_tells_conversations_apart(sys_a: str, sys_b: str, first_a: str, first_b: str) -> None:
    a = [WireMessage(role="system", content=sys_a), WireMessage(role="user", content=first_a)]
    b = [WireMessage(role="system", content=sys_b), WireMessage(role="user", content=first_b)]
    assert (hash_key(a) == hash_key(b)) == ((sys_a, first_a) == (sys_b, first_b))
