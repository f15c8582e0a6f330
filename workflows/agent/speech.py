"""What the client hears: content deltas and pre-exec speech joined into one text.

Pieces are the content of a step and the `pre_exec_msg` of each tool call. A space joins two
pieces when neither side has whitespace at the seam. The same rule rebuilds the text from the
stored log (`spoken_text`), so what the client received equals what was stored (I6).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from loopwright.schemas import Message

from .partial_json import KeyStreamer
from .tool_schema import PRE_EXEC_KEY


def _seam(last: str, text: str) -> str:
    if last and not last.isspace() and not text[:1].isspace():
        return " " + text
    return text


class SpeechJoiner:
    """Joins one step's streamed pieces onto what the turn already said."""

    __slots__ = ("_before", "_last", "_parts", "_piece", "_seamed_start")

    def __init__(self, spoken_before: str) -> None:
        self._before = spoken_before
        self._last = spoken_before[-1:]
        self._parts: list[str] = []
        self._piece: object = None
        self._seamed_start = False

    def content(self, text: str) -> str:
        """A content delta; returns the text to send."""
        return self._emit("content", text)

    def pre_exec(self, position: int, text: str) -> str:
        """A piece of call `position`'s pre-exec speech; returns the text to send."""
        return self._emit(position, text)

    def _emit(self, piece: object, text: str) -> str:
        if piece != self._piece:
            self._piece = piece
            joined = _seam(self._last, text)
            if not self._parts and joined is not text:
                self._seamed_start = True
            text = joined
        self._parts.append(text)
        self._last = text[-1]
        return text

    @property
    def step_said(self) -> str:
        """This step's text without the joining space put at its start (what is stored)."""
        text = self.step_text
        return text[1:] if self._seamed_start else text

    @property
    def step_text(self) -> str:
        """Text sent during this step."""
        return "".join(self._parts)

    @property
    def turn_text(self) -> str:
        """Text sent during the turn so far."""
        return self._before + self.step_text


def pre_exec_of(arguments: str) -> str:
    """The `pre_exec_msg` a client heard from a call's raw arguments: read by the same reader
    the stream uses, so speech from arguments whose JSON breaks later still counts."""
    return KeyStreamer(PRE_EXEC_KEY).feed(arguments)


def spoken_text(
    messages: Iterable[Message], *, pre_exec: bool = True, client_tools: Collection[str] = ()
) -> str:
    """The text a client heard for these stored messages (one turn's assistant messages);
    calls of `client_tools` are never spoken (their arguments are the client's)."""
    out = ""
    for message in messages:
        if message.role != "assistant":
            continue
        pieces = [message.content or ""]
        if pre_exec:
            pieces.extend(
                pre_exec_of(call.arguments)
                for call in message.tool_calls
                if call.name not in client_tools
            )
        for piece in pieces:
            if piece:
                out += _seam(out[-1:], piece)
    return out
