"""What a client checks in a stream, as bytes: frames, the first content token, the end.

Frames are split and matched, never parsed as JSON: the clients share a core with the fake
LLM and must stay cheap.
"""

from __future__ import annotations

import re
import time

from attrs import frozen

_CONTENT = re.compile(rb'"content":\s*"(?!")')
_ERROR = re.compile(rb'data:\s*\{\s*"error"')


@frozen(kw_only=True)
class Turn:
    """One streamed turn as the client saw it."""

    ok: bool
    """Completed: a 200 ending with `[DONE]`, some content, no error frame."""
    failure: str
    """Why not ("" when ok)."""
    ttft: float | None
    """Seconds to the first content delta (None if none came)."""
    frames: int
    """`data:` frames received, `[DONE]` excluded: the chunks relayed."""


def failed(failure: str, frames: int = 0) -> Turn:
    """A turn that did not complete."""
    return Turn(ok=False, failure=failure, ttft=None, frames=frames)


class FrameScan:
    """Feed it the body as it arrives; `turn()` says how the stream went."""

    __slots__ = ("_contents", "_done", "_error", "_rest", "_start", "frames", "ttft")

    def __init__(self, start: float) -> None:
        self._start = start
        self._rest = b""
        self._contents = 0
        self._done = self._error = False
        self.frames = 0
        self.ttft: float | None = None

    def feed(self, data: bytes) -> None:
        """Scan every frame `data` completes."""
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        *complete, self._rest = (self._rest + data).split(b"\n\n")
        for frame in complete:
            if not frame.startswith(b"data:"):
                continue  # a `: ping` comment
            if frame[5:].strip() == b"[DONE]":
                self._done = True
                continue
            self.frames += 1
            if _ERROR.match(frame):
                self._error = True
            elif _CONTENT.search(frame):
                self._contents += 1
                if self.ttft is None:
                    self.ttft = time.perf_counter() - self._start

    def turn(self) -> Turn:
        """The turn, once the body has ended."""
        if self._error:
            failure = "error frame"
        elif not self._done:
            failure = "no [DONE]"
        else:
            failure = "" if self._contents else "no content"
        return Turn(ok=not failure, failure=failure, ttft=self.ttft, frames=self.frames)
