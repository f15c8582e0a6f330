"""An incremental Server-Sent Events splitter over bytes (the per-chunk hot path).

Follows the WHATWG field rules that matter for chat streams: `data:` lines are joined with
LF, `event:` names the frame, lines starting with `:` are comments, LF and CRLF both end a
line, a blank line ends a frame, and a frame cut at EOF without its blank line still counts.
A lone CR as a line ending is not supported (no chat provider sends it). `id:` and `retry:`
are ignored: a chat stream is never resumed.
"""

from __future__ import annotations

Frame = tuple[str | None, bytes]
"""`(event name or None, data)`; data stays bytes so orjson parses it without a decode."""


class SSEDecoder:
    """Feed network reads, get complete frames; `close()` flushes the last one at EOF."""

    __slots__ = ("_data", "_event", "_tail")

    def __init__(self) -> None:
        self._tail = b""
        self._data: list[bytes] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[Frame]:
        """The frames completed by this read, in order."""
        if self._tail:
            chunk = self._tail + chunk
        lines = chunk.split(b"\n")
        self._tail = lines.pop()
        frames: list[Frame] = []
        data = self._data
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if data:
                    frames.append((self._event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data = self._data = []
                self._event = None
            elif line[:5] == b"data:":
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line[:1] != b":":
                self._field(line)
        return frames

    def _field(self, line: bytes) -> None:
        name, _, value = line.partition(b":")
        if name == b"event":
            self._event = (value[1:] if value[:1] == b" " else value).decode("utf-8", "replace")
        elif name == b"data":  # `data` with no colon: an empty data line
            self._data.append(b"")

    def close(self) -> list[Frame]:
        """At EOF: the frame still open (a body that ends without a blank line)."""
        tail, self._tail = self._tail, b""
        frames = self.feed(tail + b"\n\n") if tail else []
        if self._data:
            frames.append((self._event, b"\n".join(self._data)))
        self._data, self._event = [], None
        return frames
