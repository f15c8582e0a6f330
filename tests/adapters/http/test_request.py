"""Request parsing: every real client body parses; anything malformed is a located 400."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopwright.adapters.http.request import (
    BadRequestError,
    ChatRequest,
    WireMessage,
    error_json,
    parse_chat_request,
)
from loopwright.schemas import ToolCall

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus" / "client-requests"
NOT_BODIES = {"livekit-1.8.9-captured-request-headers.json"}
CODES = {"invalid_json", "invalid_type", "invalid_value", "missing_required_parameter"}
ROLES = {"system", "user", "assistant", "tool"}

SYSTEM = WireMessage(role="system", content="You are a helpful voice assistant.")
GREETING = WireMessage(role="assistant", content="Hi! How can I help?")
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "strict": True,
        "description": "Look up the current weather for a city.",
        "parameters": {
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "type": "object",
            "additionalProperties": False,
        },
    },
}


def body(**fields: Any) -> bytes:
    base: dict[str, Any] = {"model": "ada", "messages": [{"role": "user", "content": "hi"}]}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


def corpus_bodies() -> list[str]:
    return sorted(p.name for p in CORPUS.glob("*.json") if p.name not in NOT_BODIES)


def parse_file(name: str) -> ChatRequest:
    return parse_chat_request((CORPUS / name).read_bytes())


# ---------------------------------------------------------------- the corpus


EXPECTED: dict[str, dict[str, Any]] = {
    "livekit-1.8.9-captured-text-turn.json": {
        "model": "agent-test",
        "stream": True,
        "include_usage": True,
        "messages": (
            SYSTEM,
            GREETING,
            WireMessage(role="user", content="What's the weather in Paris?"),
        ),
        "extra": {},
    },
    "livekit-1.8.9-captured-with-tools.json": {
        "stream": True,
        "include_usage": True,
        "tools": (WEATHER_TOOL,),
        "extra": {},
    },
    "livekit-1.8.9-captured-tool-result-followup.json": {
        "messages": (
            SYSTEM,
            GREETING,
            WireMessage(role="user", content="What's the weather in Paris?"),
            WireMessage(
                role="assistant",
                tool_calls=(
                    ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
                ),
            ),
            WireMessage(role="tool", content="sunny", tool_call_id="call_1"),
        ),
        "tools": (WEATHER_TOOL,),
    },
    "livekit-1.8.9-captured-all-options.json": {
        "max_tokens": 256,
        "user": "user-42",
        "tool_choice": "auto",
        "include_usage": True,
        "extra": {"metadata": {"room": "r1"}, "parallel_tool_calls": True, "temperature": 0.3},
    },
    "livekit-1.8.9-captured-with-letta-doubled-path.json": {"model": "agent-123", "stream": True},
    "pipecat-1.14.0-captured-with-tools.json": {"stream": True, "include_usage": True},
    "vapi-docs-native-tool-call-test.json": {
        "model": "gpt-4o",
        "stream": False,
        "include_usage": False,
        "messages": (WireMessage(role="user", content="I need a payment link."),),
        "extra": {"temperature": 0.7},
    },
    "vapi-docs-transfercall-destination-test.json": {
        "stream": False,
        "extra": {"temperature": 0.7, "destination": "555-1234"},
    },
    "vapi-legacy-webcall-functions-recorded-2024.json": {
        "model": "gpt-3.5-turbo",
        "stream": True,
        "max_tokens": 500,
        "tools": (
            {
                "type": "function",
                "function": {
                    "name": "endCall",
                    "parameters": {"type": "object", "properties": {}},
                    "description": "Use this function to end the call.",
                },
            },
        ),
    },
}


def test_every_corpus_body_has_an_expectation() -> None:
    assert sorted(EXPECTED) == corpus_bodies()


@pytest.mark.parametrize("name", corpus_bodies())
def test_corpus_body_parses(name: str) -> None:
    request = parse_file(name)
    for attribute, expected in EXPECTED[name].items():
        assert getattr(request, attribute) == expected, attribute
    raw = orjson.loads((CORPUS / name).read_bytes())
    assert len(request.messages) == len(raw["messages"])
    assert all(t["type"] == "function" for t in request.tools)


def test_vapi_call_and_org_stay_in_extra_as_sent() -> None:
    request = parse_file("vapi-legacy-webcall-functions-recorded-2024.json")
    assert request.extra["call"]["callId"] == "e5027f82-41b8-4b2c-9228-e5f0e88edbf3"
    assert set(request.extra) == {"temperature", "call", "org", "metadata"}
    assert "functions" not in request.extra


# ---------------------------------------------------------------- lenient shapes


def parse_messages(*messages: Any) -> tuple[WireMessage, ...]:
    return parse_chat_request(body(messages=list(messages))).messages


def test_roles_are_normalised() -> None:
    got = parse_messages({"role": "developer", "content": "be brief"}, {"role": "user"})
    assert got == (WireMessage(role="system", content="be brief"), WireMessage(role="user"))


def test_content_parts_give_their_text() -> None:
    (got,) = parse_messages(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hello", "cache_control": {"type": "ephemeral"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                {"type": "text", "text": "world"},
            ],
        }
    )
    assert got.content == "Hello\nworld"


def test_content_parts_without_text_give_none() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    assert parse_messages({"role": "user", "content": [image]})[0].content is None
    assert parse_messages({"role": "user", "content": []})[0].content is None


def test_assistant_refusal_part_is_its_text() -> None:
    refusal = {"type": "refusal", "refusal": "I can't help with that."}
    (got,) = parse_messages({"role": "assistant", "content": [refusal]})
    assert got.content == "I can't help with that."


def test_assistant_tool_calls_without_content_key() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    (got,) = parse_messages({"role": "assistant", "tool_calls": [call]})
    assert got == WireMessage(
        role="assistant", tool_calls=(ToolCall(id="c1", name="f", arguments="{}"),)
    )


def test_arguments_sent_as_an_object_become_json_text() -> None:
    call = {"id": "c1", "function": {"name": "f", "arguments": {"city": "Paris"}}}
    (got,) = parse_messages({"role": "assistant", "tool_calls": [call]})
    assert got.tool_calls[0].arguments == '{"city":"Paris"}'
    call = {"id": "c1", "function": {"name": "f"}}
    assert (
        parse_messages({"role": "assistant", "tool_calls": [call]})[0].tool_calls[0].arguments == ""
    )


LEGACY_TURN = [
    {"role": "system", "content": "You end calls."},
    {"role": "user", "content": "bye"},
    {"role": "assistant", "content": None, "function_call": {"name": "endCall", "arguments": "{}"}},
    {"role": "function", "name": "endCall", "content": "ended"},
]


def test_legacy_function_call_and_result_share_a_stable_id() -> None:
    got = parse_messages(*LEGACY_TURN)
    (call,) = got[2].tool_calls
    assert (call.name, call.arguments) == ("endCall", "{}")
    assert got[3] == WireMessage(role="tool", content="ended", tool_call_id=call.id, name="endCall")
    later = parse_messages(
        *LEGACY_TURN, {"role": "user", "content": "still there?"}, *LEGACY_TURN[2:]
    )
    assert later[2].tool_calls[0].id == call.id, (
        "the same call keeps its id as the transcript grows"
    )
    assert later[5].tool_calls[0].id != call.id, "a second identical call gets its own id"
    assert later[6].tool_call_id == later[5].tool_calls[0].id


def test_legacy_results_answer_calls_by_name() -> None:
    got = parse_messages(
        {"role": "assistant", "function_call": {"name": "a", "arguments": "1"}},
        {"role": "assistant", "function_call": {"name": "b", "arguments": "2"}},
        {"role": "assistant", "function_call": {"name": "c", "arguments": "3"}},
        {"role": "function", "name": "a", "content": "A"},
        {"role": "function", "name": "other", "content": "?"},
        {"role": "function", "content": "?"},
        {"role": "function", "name": "a", "content": "again"},
    )
    a, b, c = (got[k].tool_calls[0].id for k in range(3))
    assert [m.tool_call_id for m in got[3:6]] == [a, c, b], "by name, else the latest open call"
    orphan = got[6].tool_call_id
    assert orphan is not None and orphan not in {a, b, c}


def test_top_level_options() -> None:
    request = parse_chat_request(
        body(stream=None, stream_options=None, max_completion_tokens=10, max_tokens=99, user=None)
    )
    assert (request.stream, request.include_usage, request.max_tokens, request.user) == (
        False,
        False,
        10,
        None,
    )
    assert parse_chat_request(body(max_tokens=7)).max_tokens == 7
    assert parse_chat_request(body()).max_tokens is None


def test_unknown_fields_of_any_type_are_kept() -> None:
    extra = {
        "call": {"id": "call-1"},
        "customer": {"number": "+15550100"},
        "phoneNumber": None,
        "metadata": [1, 2],
        "temperature": 0,
        "seed": 3,
        "n": "odd",
    }
    request = parse_chat_request(body(**extra))
    assert request.extra == extra


def test_object_user_stays_in_extra() -> None:
    request = parse_chat_request(body(user={"id": "u-1", "name": "Ada"}))
    assert request.user is None
    assert request.extra["user"] == {"id": "u-1", "name": "Ada"}


def test_legacy_functions_and_function_call() -> None:
    functions = [{"name": "endCall", "parameters": {}}]
    request = parse_chat_request(body(functions=functions, function_call={"name": "endCall"}))
    assert request.tools == ({"type": "function", "function": functions[0]},)
    assert request.tool_choice == {"type": "function", "function": {"name": "endCall"}}
    assert parse_chat_request(body(function_call="none")).tool_choice == "none"
    both = parse_chat_request(body(tool_choice="required", function_call="none"))
    assert both.tool_choice == "required"


def test_tool_without_type_is_a_function_tool() -> None:
    request = parse_chat_request(body(tools=[{"function": {"name": "f"}}]))
    assert request.tools == ({"type": "function", "function": {"name": "f"}},)


def test_empty_transcript_is_accepted() -> None:
    assert parse_chat_request(body(messages=[])).messages == ()


# ---------------------------------------------------------------- malformed bodies

MALFORMED: list[tuple[bytes, str | None, str]] = [
    (b"", None, "invalid_json"),
    (b"{", None, "invalid_json"),
    (b"\xff\xfe{}", None, "invalid_json"),
    (b'{"model": "ada", "messages": [], "x": NaN}', None, "invalid_json"),
    (b"[]", None, "invalid_type"),
    (b'"hello"', None, "invalid_type"),
    (body(model=...), "model", "missing_required_parameter"),
    (body(model=3), "model", "invalid_type"),
    (body(model=""), "model", "invalid_type"),
    (body(messages=...), "messages", "missing_required_parameter"),
    (body(messages={"role": "user"}), "messages", "invalid_type"),
    (body(messages=["hi"]), "messages[0]", "invalid_type"),
    (body(messages=[{"content": "hi"}]), "messages[0].role", "missing_required_parameter"),
    (body(messages=[{"role": 1}]), "messages[0].role", "invalid_type"),
    (body(messages=[{"role": ["user"]}]), "messages[0].role", "invalid_type"),
    (body(messages=[{"role": "user"}, {"role": "bot"}]), "messages[1].role", "invalid_value"),
    (body(messages=[{"role": "user", "content": 5}]), "messages[0].content", "invalid_type"),
    (body(messages=[{"role": "user", "content": [5]}]), "messages[0].content[0]", "invalid_type"),
    (
        body(messages=[{"role": "user", "content": [{"type": "text", "text": 1}]}]),
        "messages[0].content[0].text",
        "invalid_type",
    ),
    (
        body(messages=[{"role": "user", "content": [{"type": ["text"]}]}]),
        "messages[0].content[0].type",
        "invalid_type",
    ),
    (body(messages=[{"role": "user", "name": 5}]), "messages[0].name", "invalid_type"),
    (
        body(messages=[{"role": "tool", "content": "x"}]),
        "messages[0].tool_call_id",
        "missing_required_parameter",
    ),
    (
        body(messages=[{"role": "tool", "tool_call_id": 7}]),
        "messages[0].tool_call_id",
        "invalid_type",
    ),
    (
        body(messages=[{"role": "assistant", "tool_calls": {}}]),
        "messages[0].tool_calls",
        "invalid_type",
    ),
    (
        body(messages=[{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]),
        "messages[0].tool_calls[0].id",
        "missing_required_parameter",
    ),
    (
        body(messages=[{"role": "assistant", "tool_calls": [{"id": "c"}]}]),
        "messages[0].tool_calls[0].function",
        "invalid_type",
    ),
    (
        body(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "function": {}}]}]),
        "messages[0].tool_calls[0].function.name",
        "missing_required_parameter",
    ),
    (
        body(
            messages=[
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": 1}}],
                }
            ]
        ),
        "messages[0].tool_calls[0].function.arguments",
        "invalid_type",
    ),
    (
        body(messages=[{"role": "assistant", "function_call": "endCall"}]),
        "messages[0].function_call",
        "invalid_type",
    ),
    (body(stream="true"), "stream", "invalid_type"),
    (body(stream_options=True), "stream_options", "invalid_type"),
    (body(stream_options={"include_usage": 1}), "stream_options.include_usage", "invalid_type"),
    (body(max_tokens="5"), "max_tokens", "invalid_type"),
    (body(max_tokens=1.5), "max_tokens", "invalid_type"),
    (body(max_tokens=True), "max_tokens", "invalid_type"),
    (body(max_completion_tokens=0), "max_completion_tokens", "invalid_value"),
    (body(tools={}), "tools", "invalid_type"),
    (body(tools=["f"]), "tools[0]", "invalid_type"),
    (body(tools=[{"type": "code_interpreter"}]), "tools[0].type", "invalid_value"),
    (body(tools=[{"type": "function"}]), "tools[0].function", "invalid_type"),
    (
        body(tools=[{"type": "function", "function": {"name": ""}}]),
        "tools[0].function.name",
        "invalid_type",
    ),
    (body(functions=[{"description": "x"}]), "functions[0].name", "missing_required_parameter"),
    (body(function_call=5), "function_call", "invalid_value"),
]


@pytest.mark.parametrize(("raw", "param", "code"), MALFORMED)
def test_malformed_body_is_located(raw: bytes, param: str | None, code: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_chat_request(raw)
    assert (caught.value.param, caught.value.code) == (param, code)
    error = orjson.loads(error_json(caught.value))["error"]
    assert error == {
        "message": caught.value.message,
        "type": "invalid_request_error",
        "param": param,
        "code": code,
    }


def test_error_messages_say_the_fix() -> None:
    with pytest.raises(BadRequestError, match="use one of assistant, developer, function"):
        parse_chat_request(body(messages=[{"role": "bot"}]))
    with pytest.raises(BadRequestError, match=r"messages\[0\].tool_call_id: missing; send the id"):
        parse_chat_request(body(messages=[{"role": "tool"}]))


def test_error_message_does_not_echo_huge_values() -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_chat_request(body(messages=[{"role": "x" * 100_000}]))
    assert len(caught.value.message) < 200


def test_arguments_too_deep_to_encode_are_a_bad_request() -> None:
    # Deeper than orjson encodes (255) but not than it decodes (1024).
    deep = '{"a":' * 300 + "{}" + "}" * 300
    call = '{"id": "c", "function": {"name": "f", "arguments": ' + deep + "}}"
    raw = '{"model": "ada", "messages": [{"role": "assistant", "tool_calls": [' + call + "]}]}"
    with pytest.raises(BadRequestError) as caught:
        parse_chat_request(raw.encode())
    assert caught.value.param == "messages[0].tool_calls[0].function.arguments"


# ---------------------------------------------------------------- fuzzing


def check_error(err: BadRequestError) -> None:
    assert err.code in CODES
    error = orjson.loads(error_json(err))["error"]
    assert error["message"] and error["param"] == err.param


def check_parse(raw: bytes) -> None:
    """Parses into well-formed data, or raises BadRequestError with a valid error body."""
    try:
        request = parse_chat_request(raw)
    except BadRequestError as err:
        check_error(err)
        return
    assert isinstance(request.model, str) and request.model
    for message in request.messages:
        assert message.role in ROLES
        assert message.content is None or isinstance(message.content, str)
        assert all(isinstance(call.arguments, str) for call in message.tool_calls)
        assert message.role != "tool" or isinstance(message.tool_call_id, str)
    assert all(tool["type"] == "function" for tool in request.tools)


any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    check_parse(raw)


@given(any_json)
def test_fuzz_arbitrary_json(value: Any) -> None:
    # The stdlib encoder also writes what orjson refuses: NaN, huge integers, lone surrogates.
    check_parse(json.dumps(value).encode())


def sometimes(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes any JSON value, sometimes the key left out."""
    return st.one_of(valid, valid, any_json, st.just(...))


def shaped(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({k: sometimes(v) for k, v in fields.items()}).map(
        lambda d: {k: v for k, v in d.items() if v is not ...}
    )


_parts = st.lists(
    shaped(
        {"type": st.sampled_from(["text", "image_url", "refusal", "input_text"]), "text": st.text()}
    )
    | st.text(),
    max_size=3,
)
_calls = st.lists(
    shaped(
        {
            "id": st.text(max_size=3),
            "type": st.just("function"),
            "function": shaped({"name": st.text(max_size=3), "arguments": st.text() | any_json}),
        }
    ),
    max_size=2,
)
_messages = st.lists(
    shaped(
        {
            "role": st.sampled_from(
                ["system", "developer", "user", "assistant", "tool", "function"]
            ),
            "content": st.none() | st.text() | _parts,
            "tool_calls": _calls,
            "function_call": shaped({"name": st.text(max_size=3), "arguments": st.text()}),
            "tool_call_id": st.text(max_size=3),
            "name": st.text(max_size=3),
        }
    ),
    max_size=4,
)
_tool = shaped({"type": st.just("function"), "function": shaped({"name": st.text(max_size=3)})})
near_valid_bodies = shaped(
    {
        "model": st.text(max_size=5),
        "messages": _messages,
        "stream": st.booleans(),
        "stream_options": shaped({"include_usage": st.booleans()}),
        "tools": st.lists(_tool, max_size=2),
        "functions": st.lists(shaped({"name": st.text(max_size=3)}), max_size=2),
        "function_call": st.sampled_from(["auto", "none"]) | shaped({"name": st.text()}),
        "max_tokens": st.integers(-2, 2**64),
        "max_completion_tokens": st.integers(-2, 10),
        "user": st.text() | st.fixed_dictionaries({"id": st.text()}),
        "call": any_json,
    }
)


@given(near_valid_bodies)
def test_fuzz_near_valid_bodies(value: dict[str, Any]) -> None:
    check_parse(json.dumps(value).encode())
