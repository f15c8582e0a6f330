"""The one-pass alignment of `turn_suffix` (a client that copied every reply it heard) finds
exactly the pair the general longest-chain search finds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loopwright.adapters.http.request import WireMessage
from loopwright.adapters.http.suffix import _aligned_pair, _anchor_pair
from loopwright.schemas import Message

from .test_suffix import contents, conversations, copy, new_messages, norm, said, sys, user


def exact(m: Message) -> WireMessage:
    """The client's copy of a stored message, word for word (its own spacing, maybe)."""
    content = m.content
    if m.role == "assistant" and content and " " in content:
        content = content.replace(" ", "  ")  # clients respace spoken text
    return WireMessage(role=m.role, content=content, tool_calls=m.tool_calls)


@given(conversations(), st.integers(0, 6), new_messages)
def test_a_client_with_every_reply_is_aligned_in_one_pass(
    history: list[Message], dropped: int, new: list[WireMessage]
) -> None:
    copies = [exact(m) for m in history][dropped:]  # a client may trim its oldest messages
    transcript = [sys("prompt"), *copies, *[m for m in new if m.role != "assistant"]]
    fast = _aligned_pair(history, transcript)
    assert fast is None or fast == _anchor_pair(history, transcript)
    replies = [m for m in copies if m.role == "assistant"]
    if replies and all(norm(m.content or "") for m in replies):
        assert fast is not None  # the usual case takes the one pass


@given(conversations(), st.data(), new_messages, st.integers(0, 6))
def test_the_one_pass_never_disagrees_with_the_search(
    history: list[Message], data: st.DataObject, new: list[WireMessage], dropped: int
) -> None:
    transcript = [*[copy(data, m) for m in history][dropped:], *new]
    fast = _aligned_pair(history, transcript)
    assert fast is None or fast == _anchor_pair(history, transcript)


@given(st.lists(contents, min_size=1, max_size=6), st.lists(contents, max_size=6))
def test_replies_and_copies_of_any_text_agree(stored: list[str], sent: list[str]) -> None:
    history = [
        Message(id=f"m{i}", role=role, content=text)
        for i, text in enumerate(stored)
        for role in ("user", "assistant")
    ]
    transcript = [m for text in sent for m in (user("q"), said(text))]
    fast = _aligned_pair(history, transcript)
    assert fast is None or fast == _anchor_pair(history, transcript)
