"""Input message ids: the same turn twice gets the same ids, another turn other ids."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopwright.adapters.http.request import WireMessage, parse_chat_request
from loopwright.adapters.http.suffix import turn_suffix
from loopwright.adapters.http.turn_key import input_ids, to_messages
from loopwright.schemas import Message, ToolCall

HI = WireMessage(role="user", content="hi")
TURN = (
    WireMessage(role="system", content="Be brief."),
    HI,
    WireMessage(role="tool", content="ok", tool_call_id="c1", name="end_call"),
    WireMessage(role="assistant", content=None, tool_calls=(ToolCall(id="c2", name="f"),)),
)


def ids(
    *messages: WireMessage, agent: str = "a", session: str = "s", anchor: str | None = "m"
) -> tuple[str, ...]:
    return input_ids(agent, session, anchor, messages)


def test_ids_are_deterministic_and_well_formed() -> None:
    got = ids(*TURN)
    assert got == ids(*TURN)
    assert len(set(got)) == len(got) == len(TURN)
    assert all(re.fullmatch("msg-[0-9a-f]{32}", i) for i in got)
    assert ids() == ()


VARIANTS: list[dict[str, Any]] = [
    {"agent": "b"},
    {"session": "t"},
    {"anchor": None},
    {"anchor": ""},
    {"content": ""},
    {"content": None},
    {"content": "hi "},
    {"role": "system"},
    {"tool_call_id": "c1"},
    {"name": "ada"},
    {"tool_calls": (ToolCall(id="c", name="f"),)},
]


@pytest.mark.parametrize("change", VARIANTS)
def test_any_difference_gives_other_ids(change: dict[str, Any]) -> None:
    keys = {k: change.pop(k) for k in ("agent", "session", "anchor") if k in change}
    message = WireMessage(**{"role": "user", "content": "hi", **change})
    assert ids(message, **keys)[0] != ids(HI)[0]


def test_tool_call_fields_count() -> None:
    def with_call(**fields: str) -> str:
        call = ToolCall(**{"id": "c", "name": "f", "arguments": "{}", **fields})
        return ids(WireMessage(role="assistant", tool_calls=(call,)))[0]

    assert len({with_call(), with_call(id="d"), with_call(name="g"), with_call(arguments="")}) == 4


def test_an_id_depends_on_what_came_before_it_in_the_turn() -> None:
    bye = WireMessage(role="user", content="bye")
    assert ids(HI, bye)[0] == ids(HI)[0], "a retry cut short keeps the ids of what it holds"
    assert ids(HI, bye)[1] != ids(bye)[0]
    assert ids(HI, bye)[1] != ids(WireMessage(role="user", content="hello"), bye)[1]
    assert ids(HI, HI)[0] != ids(HI, HI)[1]


def test_same_body_twice_same_ids() -> None:
    body = (
        b'{"model": "ada", "messages": [{"role": "system", "content": "p"},'
        b' {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "hi"}]}'
    )
    stored = [Message(id="m0", role="assistant", content="Hello!")]

    def once() -> tuple[str, ...]:
        suffix = turn_suffix(stored, parse_chat_request(body).messages)
        return input_ids("agent-1", "owui:c", suffix.anchor, suffix.messages)

    assert once() == once()


names = st.sampled_from(["", "a", "b"])
wire = st.builds(
    WireMessage,
    role=st.sampled_from(["user", "tool"]),
    content=st.none() | names,
    tool_call_id=st.none() | names,
)
turns = st.tuples(names, names, st.none() | names, st.lists(wire, max_size=3))


@given(turns, turns)
def test_ids_equal_exactly_when_the_turns_agree_so_far(a: Any, b: Any) -> None:
    got_a, got_b = input_ids(a[0], a[1], a[2], a[3]), input_ids(b[0], b[1], b[2], b[3])
    for k in range(min(len(a[3]), len(b[3]))):
        same = a[:3] == b[:3] and a[3][: k + 1] == b[3][: k + 1]
        assert (got_a[k] == got_b[k]) == same


def test_to_messages() -> None:
    got = to_messages(TURN, ids(*TURN), "run-1", 12.5)
    assert [m.id for m in got] == list(ids(*TURN))
    assert got[2] == Message(
        id=got[2].id,
        role="tool",
        content="ok",
        tool_call_id="c1",
        name="end_call",
        run_id="run-1",
        created_at=12.5,
    )
    assert got[3].tool_calls == TURN[3].tool_calls and got[3].content is None
    assert {m.run_id for m in got} == {"run-1"} and {m.step for m in got} == {0}


def test_to_messages_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="2 messages but 1 ids"):
        to_messages([HI, HI], ["msg-1"], "run", 0.0)
    with pytest.raises(ValueError, match="role 'developer' cannot be stored"):
        to_messages([WireMessage(role="developer", content="x")], ["msg-1"], "run", 0.0)  # type: ignore[arg-type]
