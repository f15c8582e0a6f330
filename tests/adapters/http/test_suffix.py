"""The turn's input: what the client's transcript adds after the agent's last reply."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from loopwright.adapters.http.request import WireMessage, parse_chat_request
from loopwright.adapters.http.suffix import Suffix, _speech, turn_suffix
from loopwright.engine.testing.strategies import texts
from loopwright.schemas import Message, Role, ToolCall
from loopwright.workflows.agent.speech import pre_exec_of, spoken_text

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus" / "client-requests"


def sys(text: str) -> WireMessage:
    return WireMessage(role="system", content=text)


def user(text: str) -> WireMessage:
    return WireMessage(role="user", content=text)


def said(text: str | None, *calls: ToolCall) -> WireMessage:
    return WireMessage(role="assistant", content=text, tool_calls=calls)


def result(call_id: str, text: str) -> WireMessage:
    return WireMessage(role="tool", content=text, tool_call_id=call_id)


def call(call_id: str, name: str = "f", arguments: str = "{}") -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=arguments)


def log(*wire: WireMessage, run_id: str | None = None) -> list[Message]:
    """Stored messages `m0`, `m1`, ... with the wire messages' fields."""
    return [stored(f"m{i}", m, run_id) for i, m in enumerate(wire)]


def stored(id: str, m: WireMessage, run_id: str | None = None) -> Message:
    return Message(
        id=id,
        role=m.role,
        content=m.content,
        tool_calls=m.tool_calls,
        tool_call_id=m.tool_call_id,
        name=m.name,
        run_id=run_id,
    )


def expect(got: Suffix, messages: Sequence[WireMessage], anchor: str | None, kind: str) -> None:
    assert (got.messages, got.anchor, got.kind) == (tuple(messages), anchor, kind)


PROMPT = sys("You are a helpful voice assistant.")
GREETING = said("Hi! How can I help?")
PARIS = user("What's the weather in Paris?")


# ---------------------------------------------------------------- the corpus


def corpus(name: str) -> tuple[WireMessage, ...]:
    return parse_chat_request((CORPUS / name).read_bytes()).messages


LIVEKIT_TURNS = [
    "livekit-1.8.9-captured-text-turn.json",
    "livekit-1.8.9-captured-with-tools.json",
    "livekit-1.8.9-captured-all-options.json",
    "livekit-1.8.9-captured-with-letta-doubled-path.json",
    "pipecat-1.14.0-captured-with-tools.json",
]


@pytest.mark.parametrize("name", LIVEKIT_TURNS)
def test_corpus_turn_after_our_greeting(name: str) -> None:
    transcript = corpus(name)
    expect(turn_suffix(log(GREETING), transcript), transcript[2:], "m0", "user")
    # A new agent adopts the client's greeting as part of its first turn.
    expect(turn_suffix([], transcript), transcript[1:], None, "mixed")


def test_corpus_tool_result_followup() -> None:
    transcript = corpus("livekit-1.8.9-captured-tool-result-followup.json")
    history = log(GREETING, PARIS, transcript[3])
    expect(turn_suffix(history, transcript), transcript[4:], "m2", "tool_results")


def test_corpus_legacy_vapi_webcall() -> None:
    transcript = corpus("vapi-legacy-webcall-functions-recorded-2024.json")
    # Vapi speaks `firstMessage` ("Hello, can you hear me?") itself: the transcript's greeting
    # is the client's, so a new agent adopts it; one that spoke with other spacing matches it.
    expect(turn_suffix([], transcript), transcript[1:], None, "mixed")
    ours = log(said("Hello.\n Can you hear  me?"))
    expect(turn_suffix(ours, transcript), transcript[2:], "m0", "user")


@pytest.mark.parametrize(
    "name", ["vapi-docs-native-tool-call-test.json", "vapi-docs-transfercall-destination-test.json"]
)
def test_corpus_single_user_message(name: str) -> None:
    transcript = corpus(name)
    expect(turn_suffix([], transcript), transcript, None, "user")
    expect(turn_suffix(log(said("Something else.")), transcript), transcript, None, "user")


def test_every_corpus_body_is_covered() -> None:
    covered = {
        *LIVEKIT_TURNS,
        "livekit-1.8.9-captured-tool-result-followup.json",
        "vapi-legacy-webcall-functions-recorded-2024.json",
        "vapi-docs-native-tool-call-test.json",
        "vapi-docs-transfercall-destination-test.json",
    }
    bodies = {p.name for p in CORPUS.glob("*.json")} - {
        "livekit-1.8.9-captured-request-headers.json"
    }
    assert covered == bodies


# ---------------------------------------------------------------- the cases of issue 11


def test_trailing_system_message_is_an_instruction() -> None:
    reply = said("It's sunny in Paris.")
    history = log(GREETING, PARIS, reply)
    transcript = [PROMPT, GREETING, PARIS, reply, sys("Say goodbye and end the call.")]
    expect(turn_suffix(history, transcript), transcript[4:], "m2", "instruction")


def test_client_tool_results_follow_the_call() -> None:
    calls = (call("c1", "transfer"), call("c2", "end_call"))
    history = log(PARIS, said("One moment.", *calls))
    transcript = [
        PROMPT,
        PARIS,
        said("One moment.", *calls),
        result("c1", "ok"),
        result("c2", "ok"),
    ]
    expect(turn_suffix(history, transcript), transcript[3:], "m1", "tool_results")
    # Matched by call id even when the client rebuilt the text differently.
    transcript[2] = said(None, *calls)
    expect(turn_suffix(history, transcript), transcript[3:], "m1", "tool_results")


@pytest.mark.parametrize("transcript", [[], [PROMPT], [PROMPT, sys("Greet the user.")]])
def test_greeting_with_empty_history(transcript: list[WireMessage]) -> None:
    expect(turn_suffix([], transcript), [], None, "greeting")


def test_nothing_after_our_reply_is_a_greeting_kind() -> None:
    expect(turn_suffix(log(GREETING), [PROMPT, GREETING]), [], "m0", "greeting")


def test_assistant_prefill_is_input_not_our_reply() -> None:
    history = log(GREETING, user("Hi"), said("Sure."))
    for prefill in ("Sure", "Sure.", "Hi!"):
        transcript = [PROMPT, GREETING, user("Hi"), said("Sure."), user("A poem?"), said(prefill)]
        expect(turn_suffix(history, transcript), transcript[4:], "m2", "mixed")


def test_barge_in_truncated_reply() -> None:
    reply = said("The weather in Paris is sunny and warm today.")
    history = log(GREETING, PARIS, reply)
    transcript = [PROMPT, GREETING, PARIS, said("The weather in  Paris"), user("And Rome?")]
    got = turn_suffix(history, transcript)
    expect(got, transcript[4:], "m2", "user")
    assert got.truncated == ("m2", "The weather in  Paris")
    assert turn_suffix(history, [*transcript[:3], reply, user("x")]).truncated is None


def test_repeated_short_replies_align_in_order() -> None:
    history = log(user("a"), said("Okay."), user("b"), said("Okay."))
    transcript = [user("a"), said("Okay."), user("b"), said("Okay."), user("c")]
    expect(turn_suffix(history, transcript), [user("c")], "m3", "user")


def test_client_copy_of_old_messages_only() -> None:
    # The agent replied, but the client never got the reply (it went away): the input follows
    # the client's copy of the older reply, and the earlier user message is sent again.
    history = log(GREETING, PARIS, said("Sunny."))
    transcript = [PROMPT, GREETING, PARIS]
    expect(turn_suffix(history, transcript), [PARIS], "m0", "user")


def test_client_trimmed_its_transcript() -> None:
    history = log(GREETING, PARIS, said("Sunny."), user("Rome?"), said("Rainy."))
    transcript = [PROMPT, said("Rainy."), user("Thanks")]
    expect(turn_suffix(history, transcript), [user("Thanks")], "m4", "user")


def test_no_match_with_history_takes_what_follows_the_last_assistant() -> None:
    history = log(said("Something we said."))
    transcript = [PROMPT, said("Client greeting."), user("hi"), sys("be brief")]
    expect(turn_suffix(history, transcript), transcript[2:], None, "mixed")
    transcript = [PROMPT, sys("Second prompt."), user("hi"), user("there")]
    expect(turn_suffix(history, transcript), transcript[2:], None, "user")


def test_leading_system_messages_are_never_input() -> None:
    transcript = [PROMPT, sys("Context."), user("hi")]
    expect(turn_suffix([], transcript), [user("hi")], None, "user")


# ---------------------------------------------------------------- turns of several steps

SPEECH = json.dumps({"pre_exec_msg": "Let me check the weather.", "city": "Paris"})


def multi_step_turn() -> list[Message]:
    """One run: the user's question, a step calling the agent's own tool (its pre-exec speech
    spoken), the tool's result, the final text."""
    return log(
        PARIS,
        said(None, call("own-1", "get_weather", SPEECH)),
        result("own-1", "sunny"),
        said("It's sunny."),
        run_id="run-1",
    )


def test_multi_step_turn_is_matched_as_the_text_the_client_heard() -> None:
    history = multi_step_turn()
    heard = spoken_text(history)
    assert heard == "Let me check the weather. It's sunny."
    transcript = [PROMPT, PARIS, said(heard), user("Thanks!")]
    expect(turn_suffix(history, transcript), [user("Thanks!")], "m3", "user")
    # An agent that does not speak pre-exec messages: the client heard the final text only.
    transcript[2] = said("It's sunny.")
    expect(turn_suffix(history, transcript), [user("Thanks!")], "m3", "user")


@pytest.mark.parametrize(
    ("kept", "cut"), [("Let me check", "m1"), ("Let me check the weather.It's", "m3")]
)
def test_multi_step_turn_cut_by_barge_in(kept: str, cut: str) -> None:
    transcript = [PROMPT, PARIS, said(kept), user("Stop.")]
    got = turn_suffix(multi_step_turn(), transcript)
    expect(got, [user("Stop.")], "m3", "user")
    assert got.truncated == (cut, kept)


def test_prefix_match_is_case_sensitive() -> None:
    history = log(PARIS, said("Sunny."))
    assert turn_suffix(history, [PARIS, said("Sun"), user("x")]).anchor == "m1"
    assert turn_suffix(history, [PARIS, said("sunny"), user("x")]).anchor is None


# ---------------------------------------------------------------- properties

SHORT = st.sampled_from(["Okay.", "Okay", "Sure.", "Hi!", "Hi", "ok", "x y"])
contents = SHORT | texts(max_size=12)


def norm(text: str) -> str:
    return "".join(text.split())


OTHER_ROLES: list[Role] = ["user", "system", "tool"]


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    """Stored logs ending with an assistant reply the client can recognise (non-blank text or
    a tool call); short texts repeat often, so replies collide."""
    out: list[Message] = []
    for turn in range(draw(st.integers(1, 4))):
        run_id = draw(st.none() | st.just(f"run-{turn}"))
        for _ in range(draw(st.integers(0, 2))):
            role = draw(st.sampled_from(OTHER_ROLES))
            tool_call_id = "t" if role == "tool" else None
            m = WireMessage(role=role, content=draw(contents), tool_call_id=tool_call_id)
            out.append(stored(f"m{len(out)}", m, run_id))
        for _ in range(draw(st.integers(1, 2))):
            calls = tuple(call(f"c{len(out)}-{k}") for k in range(draw(st.integers(0, 2))))
            text = draw(contents)
            assume(norm(text) or calls)
            out.append(stored(f"m{len(out)}", said(text, *calls), run_id))
    return out


def copy(data: st.DataObject, m: Message) -> WireMessage:
    """The client's copy of a stored message; a reply possibly cut to a non-blank prefix."""
    content = m.content
    if m.role == "assistant" and content and norm(content) and data.draw(st.booleans()):
        cuts = [k for k in range(1, len(content) + 1) if norm(content[:k])]
        content = content[: data.draw(st.sampled_from(cuts))]
    return WireMessage(
        role=m.role,
        content=content,
        tool_calls=m.tool_calls,
        tool_call_id=m.tool_call_id,
        name=m.name,
    )


new_messages = st.lists(
    st.builds(
        WireMessage,
        role=st.sampled_from(["system", "user", "assistant", "tool"]),
        content=st.none() | contents,
        tool_calls=st.lists(st.builds(call, st.sampled_from(["c1-0", "c3-0", "new"]))).map(tuple),
    ),
    max_size=4,
)


@given(conversations(), st.lists(contents.map(sys), max_size=2), new_messages, st.data())
def test_suffix_is_exactly_the_new_messages(
    history: list[Message],
    prompt: list[WireMessage],
    new: list[WireMessage],
    data: st.DataObject,
) -> None:
    copies = [copy(data, m) for m in history]
    got = turn_suffix(history, [*prompt, *copies, *new])
    assert got.messages == tuple(new)
    last = history[-1]
    assert got.anchor == last.id
    kept = copies[-1].content or ""
    cut = norm(kept) != norm(last.content or "") and not last.tool_calls  # ids match exactly
    assert got.truncated == ((last.id, kept) if cut else None)


@st.composite
def agent_turns(draw: st.DrawFn) -> tuple[list[Message], list[WireMessage]]:
    """Stored turns as the agent loop writes them (steps calling the agent's own tools, with
    pre-exec speech, then a final text) and the client's view: one message per reply with
    the text it heard, possibly cut by a barge-in."""
    history: list[Message] = []
    view: list[WireMessage] = []
    speaks = draw(st.booleans())
    for turn in range(draw(st.integers(1, 3))):
        run = f"run-{turn}"
        question = user(draw(contents))
        history.append(stored(f"m{len(history)}", question, run))
        start = len(history)
        for step in range(draw(st.integers(0, 2))):
            speech = json.dumps({"pre_exec_msg": draw(contents)})
            own = call(f"own-{turn}-{step}", "tool", speech)
            history.append(stored(f"m{len(history)}", said(draw(st.none() | contents), own), run))
            history.append(stored(f"m{len(history)}", result(own.id, "done"), run))
        final = draw(contents)
        assume(norm(final))
        history.append(stored(f"m{len(history)}", said(final), run))
        heard = spoken_text(history[start:], pre_exec=speaks)
        cuts = [k for k in range(1, len(heard) + 1) if norm(heard[:k])]
        view += [question, said(heard[: draw(st.sampled_from(cuts))])]
    return history, view


# A new assistant message equal to a step of the last turn that the client never heard could
# pass for it; new replies here start with NUL, which stored text never holds.
unmistakable_new = st.lists(
    st.builds(
        WireMessage,
        role=st.sampled_from(["system", "user", "assistant", "tool"]),
        content=st.none() | contents.map(lambda text: "\x00" + text),
    ),
    max_size=4,
)


@given(agent_turns(), unmistakable_new)
def test_suffix_after_multi_step_turns(
    turns: tuple[list[Message], list[WireMessage]], new: list[WireMessage]
) -> None:
    history, view = turns
    got = turn_suffix(history, [PROMPT, *view, *new])
    assert got.messages == tuple(new)
    assert got.anchor == history[-1].id
    last_run = {m.id for m in history if m.run_id == history[-1].run_id and m.role == "assistant"}
    assert got.truncated is None or (
        got.truncated[0] in last_run and got.truncated[1] == view[-1].content
    )


def test_suffix_does_not_copy_messages() -> None:
    transcript = [PROMPT, GREETING, PARIS]
    assert turn_suffix([], transcript).messages[-1] is transcript[-1]


ARGUMENT_KEYS = st.sampled_from(["pre_exec_msg", "city", "pre_exec", "msg"])


@given(
    st.dictionaries(ARGUMENT_KEYS, st.none() | st.integers() | texts(max_size=8), max_size=3)
    .map(json.dumps)
    .flatmap(lambda text: st.sampled_from([text, text[: len(text) // 2], text + "}"]))
    | texts(max_size=30)
)
def test_speech_fast_path_hears_what_the_stream_reader_heard(arguments: str) -> None:
    assert _speech(arguments) == pre_exec_of(arguments)
