"""What a client's transcript adds to the agent's stored log: the turn's input.

Clients send the whole transcript on every turn; the turn's input is what follows the agent's
last reply, which is often a trailing system or tool message rather than a user message. The
client's assistant messages are aligned with the stored ones: a pair matches by a tool call id
in common, by text equal once whitespace is dropped, or by the client's text being a non-empty
prefix of the stored text (a barge-in: the client kept only what was spoken). A stored turn
whose text is split over several assistant messages (the agent's own tools ran between steps,
their pre-exec speech spoken) is also matched as the one message the client made of it.

The alignment is the longest chain of matches in order on both sides, so a client's assistant
prefill or a repeated "Okay." cannot pass for the agent's last reply: of the chains that long,
the one that ends earliest in the transcript wins, and everything after its end is the input.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import orjson
from attrs import frozen

from loopwright.schemas import Message
from loopwright.workflows.agent.speech import pre_exec_of
from loopwright.workflows.agent.tool_schema import PRE_EXEC_KEY

from .request import WireMessage

__all__ = ["Suffix", "SuffixKind", "turn_suffix"]

SuffixKind = Literal["greeting", "user", "instruction", "tool_results", "mixed"]
_KINDS: Mapping[str, SuffixKind] = {"system": "instruction", "tool": "tool_results", "user": "user"}


@frozen(kw_only=True)
class Suffix:
    """The turn's new messages and where they attach to the stored log."""

    messages: tuple[WireMessage, ...]
    """The client's messages after the agent's last reply, oldest first."""
    anchor: str | None = None
    """Id of the stored message the client's copy matched (None: no match)."""
    truncated: tuple[str, str] | None = None
    """When the client kept only a prefix of the matched reply: the first stored message it
    did not hear in full, and the text it kept."""
    kind: SuffixKind = "greeting"
    """`greeting` (nothing new), `user`, `instruction` (only system messages),
    `tool_results` (only tool messages) or `mixed`."""


# Built per request for every stored reply: tuples, which cost a third of a frozen class.
class _Target(NamedTuple):
    """A stored reply the client may hold a copy of."""

    position: int
    """Index in the stored log of the reply's last assistant message (the anchor)."""
    text: str
    """The reply's text without whitespace ("" when it has none)."""
    ends: tuple[tuple[int, str], ...]
    """(end offset in `text`, message id) of each assistant message: locates a cut."""


class _Pair(NamedTuple):
    client: int
    target: _Target
    prefix: bool


def turn_suffix(stored: Sequence[Message], transcript: Sequence[WireMessage]) -> Suffix:
    """The turn's input: the client's messages after its copy of the agent's last reply.

    With no copy found, a new agent (nothing stored) takes the whole transcript but its leading
    system messages, adopting a client's greeting; otherwise the input follows the client's
    last assistant message (or the leading system messages, when it has none)."""
    pair = _aligned_pair(stored, transcript) or _anchor_pair(stored, transcript)
    anchor = truncated = None
    if pair is not None:
        start = pair.client + 1
        anchor = stored[pair.target.position].id
        if pair.prefix:
            truncated = (_cut(pair.target, transcript[pair.client]), _said(transcript[pair.client]))
    elif stored and (last := _last_assistant(transcript)) is not None:
        start = last + 1
    else:
        start = _after_leading_system(transcript)
    messages = tuple(transcript[start:])
    return Suffix(messages=messages, anchor=anchor, truncated=truncated, kind=_kind(messages))


def _norm(text: str | None) -> str:
    # Clients rebuild spoken text with their own spacing (TTS word alignment, joined steps).
    return "".join(text.split()) if text else ""


def _said(message: WireMessage) -> str:
    return message.content or ""


def _kind(messages: Sequence[WireMessage]) -> SuffixKind:
    roles = {m.role for m in messages}
    if not roles:
        return "greeting"
    return _KINDS.get(roles.pop(), "mixed") if len(roles) == 1 else "mixed"


def _last_assistant(transcript: Sequence[WireMessage]) -> int | None:
    for i in range(len(transcript) - 1, -1, -1):
        if transcript[i].role == "assistant":
            return i
    return None


def _after_leading_system(transcript: Sequence[WireMessage]) -> int:
    for i, message in enumerate(transcript):
        if message.role != "system":
            return i
    return len(transcript)


def _cut(target: _Target, message: WireMessage) -> str:
    kept = len(_norm(message.content))
    return next(mid for end, mid in target.ends if end > kept)


def _aligned_pair(stored: Sequence[Message], transcript: Sequence[WireMessage]) -> _Pair | None:
    """The pair `_anchor_pair` finds, in one pass, in the usual case: the client's assistant
    messages are, in order, copies (same text) of as many newest stored ones. A chain never
    holds two pairs of one client message, so this chain of them all is a longest one; every
    longest chain then ends at the client's last assistant message, and none can end on a
    newer reply than the newest. None: not that case (`_anchor_pair` decides)."""
    client = [i for i, m in enumerate(transcript) if m.role == "assistant"]
    replies = [p for p, m in enumerate(stored) if m.role == "assistant"]
    if not client or len(client) > len(replies):
        return None
    for i, position in zip(client, replies[len(replies) - len(client) :], strict=True):
        sent, kept = transcript[i].content, stored[position].content
        if not sent or sent.isspace():
            return None  # blank: it matches no reply by text
        if sent != kept and _norm(sent) != _norm(kept):  # equal text: equal once normalised
            return None
    last = replies[-1]
    text = _norm(stored[last].content)
    # What `_Index.matches` gives there: the message itself comes before any turn it ends.
    return _Pair(client[-1], _Target(last, text, ((len(text), stored[last].id),)), False)


def _anchor_pair(stored: Sequence[Message], transcript: Sequence[WireMessage]) -> _Pair | None:
    """The end of the longest in-order chain of matches; the earliest such end in the
    transcript, then the latest stored reply."""
    if not stored:
        return None
    index = _Index(stored)
    tails: list[int] = []  # tails[k]: smallest stored position ending a chain of k + 1 pairs
    best: tuple[int, int, int] | None = None
    chosen: _Pair | None = None
    for i, message in enumerate(transcript):
        if message.role != "assistant":
            continue
        matches = index.matches(message)
        # Descending positions: two pairs of one client message never chain together.
        for position in sorted(matches, reverse=True):
            k = bisect_left(tails, position)
            tails[k : k + 1] = [position]
            rank = (k + 1, -i, position)
            if best is None or rank > best:
                target, prefix = matches[position]
                best, chosen = rank, _Pair(i, target, prefix)
    return chosen


class _Index:
    """The stored replies, looked up by call id, by exact text and by text prefix."""

    def __init__(self, stored: Sequence[Message]) -> None:
        self.by_call: dict[str, list[_Target]] = defaultdict(list)
        self.by_text: dict[str, list[_Target]] = defaultdict(list)
        singles, turns = _targets(stored)
        # Sorted by text, the replies a text is a prefix of lie in one run after it.
        self.sorted = sorted((t for t in singles + turns if t.text), key=lambda t: t.text)
        self.texts = [t.text for t in self.sorted]
        for target in self.sorted:
            self.by_text[target.text].append(target)
        for target in singles:
            for call in stored[target.position].tool_calls:
                if call.id:
                    self.by_call[call.id].append(target)

    def matches(self, message: WireMessage) -> dict[int, tuple[_Target, bool]]:
        """Stored position -> (reply, matched by prefix only) for every reply this client
        message matches; an exact match wins over a prefix one at the same position."""
        found: dict[int, tuple[_Target, bool]] = {}
        for call in message.tool_calls:
            for target in self.by_call.get(call.id, ()):
                found.setdefault(target.position, (target, False))
        text = _norm(message.content)
        if not text:
            return found
        for target in self.by_text.get(text, ()):
            found.setdefault(target.position, (target, False))
        at = bisect_right(self.texts, text)
        while at < len(self.texts) and self.texts[at].startswith(text):
            found.setdefault(self.sorted[at].position, (self.sorted[at], True))
            at += 1
        return found


def _targets(stored: Sequence[Message]) -> tuple[list[_Target], list[_Target]]:
    """Every stored assistant message; and every stored turn (consecutive messages of one run)
    whose reply spans several assistant messages or speaks pre-exec speech, as the text heard
    with that speech and without it (whether the agent speaks it is the agent's setting)."""
    out: list[_Target] = []
    turns: list[_Target] = []
    start = 0
    while start < len(stored):
        run_id, end = stored[start].run_id, start + 1
        while run_id is not None and end < len(stored) and stored[end].run_id == run_id:
            end += 1
        said = spoken = ""
        said_ends: list[tuple[int, str]] = []
        spoken_ends: list[tuple[int, str]] = []
        for position in range(start, end):
            message = stored[position]
            if message.role != "assistant":
                continue
            text = _norm(message.content)
            out.append(_Target(position, text, ((len(text), message.id),)))
            said += text
            spoken += text + "".join(_norm(_speech(c.arguments)) for c in message.tool_calls)
            said_ends.append((len(said), message.id))
            spoken_ends.append((len(spoken), message.id))
        last = out[-1].position if said_ends else -1
        if len(said_ends) > 1 or spoken != said:
            turns.append(_Target(last, spoken, tuple(spoken_ends)))
        if len(said_ends) > 1 and spoken != said:
            turns.append(_Target(last, said, tuple(said_ends)))
        start = end
    return out, turns


def _speech(arguments: str) -> str:
    """The pre-exec speech in complete arguments, as the streaming reader heard it."""
    if PRE_EXEC_KEY not in arguments and "\\" not in arguments:
        return ""  # the key cannot be there, not even spelt with escapes
    if arguments.count(f'"{PRE_EXEC_KEY}"') == 1:
        # One plain occurrence: orjson reads the same value, far faster than the reader.
        try:
            value = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            speech = value.get(PRE_EXEC_KEY)
            return speech if isinstance(speech, str) else ""
    return pre_exec_of(arguments)
