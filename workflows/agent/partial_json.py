"""Stream one string value out of a JSON object that arrives in fragments.

The model speaks `pre_exec_msg` inside a tool call's arguments; the client should hear it while
the arguments are still arriving, decoded, without stray quotes, and without the reader ever
throwing (the reference threw on escapes split across chunks). The reader is a small state machine
that looks at each character once, so the cost per fragment is proportional to the fragment.
"""

from __future__ import annotations

import re
from typing import Final

# Reader modes.
_START: Final = 0  # before the root `{`
_OBJECT: Final = 1  # inside the root object, outside any string
_KEY: Final = 2  # inside a key of the root object
_SKIP_STRING: Final = 3  # inside a string we do not care about
_NESTED: Final = 4  # inside a nested object or array, outside strings
_TARGET: Final = 5  # inside the value we stream
_DONE: Final = 6  # root closed, or not an object: nothing more to emit

# What the root object expects next.
_EXPECT_KEY: Final = 0
_EXPECT_COLON: Final = 1
_EXPECT_VALUE: Final = 2
_EXPECT_COMMA: Final = 3

_QUOTE_OR_BACKSLASH = re.compile(r'["\\]')
_NESTED_SPECIAL = re.compile(r'["{}\[\]]')
_NOT_SPACE = re.compile(r"[^ \t\r\n]")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_LOW_SURROGATE = re.compile(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
# What may still become a low-surrogate escape once more text arrives.
_LOW_SURROGATE_PREFIX = re.compile(r"(?:\\(?:u(?:[dD](?:[c-fC-F][0-9a-fA-F]?)?)?)?)?")
_SIMPLE_ESCAPES: Final = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_REPLACEMENT: Final = "\ufffd"
_MAX_KEY_CHARS: Final = 1024


def _decode_escape(data: str, at: int) -> tuple[str, int] | None:
    """Decode the escape starting at the backslash `data[at]`: (text, end), or None when the
    escape is not complete yet. Invalid escapes decode leniently, lone surrogates to U+FFFD
    (a lone surrogate cannot be encoded as UTF-8 further down the stream)."""
    if at + 1 >= len(data):
        return None
    kind = data[at + 1]
    if kind != "u":
        return _SIMPLE_ESCAPES.get(kind, kind), at + 2
    digits = data[at + 2 : at + 6]
    if len(digits) < 4:
        return None
    if _HEX4.fullmatch(digits) is None:
        return _REPLACEMENT, at + 2
    code = int(digits, 16)
    if 0xDC00 <= code <= 0xDFFF:
        return _REPLACEMENT, at + 6
    if code < 0xD800 or code > 0xDBFF:
        return chr(code), at + 6
    low = data[at + 6 : at + 12]
    if len(low) < 6 and _LOW_SURROGATE_PREFIX.fullmatch(low) is not None:
        return None
    if _LOW_SURROGATE.fullmatch(low) is None:
        return _REPLACEMENT, at + 6
    pair = 0x10000 + ((code - 0xD800) << 10) + (int(low[2:], 16) - 0xDC00)
    return chr(pair), at + 12


class KeyStreamer:
    """Incremental reader of one string-valued top-level key of a JSON object.

    `feed(fragment)` returns the new decoded part of that key's value (often ""). Only the first
    occurrence at the top level counts; the key inside nested objects, the key's text used as a
    value, or a non-string value emit nothing. Never raises, whatever the text.
    """

    __slots__ = (
        "_depth",
        "_escaped",
        "_expect",
        "_key",
        "_key_chars",
        "_key_length",
        "_matched",
        "_mode",
        "_parts",
        "_pending",
        "_return_mode",
        "_seen",
    )

    def __init__(self, key: str) -> None:
        self._key = key
        self._mode = _START
        self._expect = _EXPECT_KEY
        self._depth = 0
        self._matched = False
        self._seen = False
        self._escaped = False
        self._return_mode = _OBJECT
        self._key_chars: list[str] = []
        self._key_length = 0
        self._pending = ""
        self._parts: list[str] = []

    @property
    def value(self) -> str:
        """Everything emitted so far."""
        return "".join(self._parts)

    @property
    def complete(self) -> bool:
        """True once the value's closing quote was read (later fragments emit nothing)."""
        return self._seen

    def feed(self, fragment: str) -> str:
        """Read the next fragment; return the newly decoded part of the value."""
        if self._pending:
            fragment = self._pending + fragment
            self._pending = ""
        out: list[str] = []
        at, end = 0, len(fragment)
        while at < end:
            mode = self._mode
            if mode == _TARGET:
                at = self._read_target(fragment, at, out)
            elif mode == _OBJECT:
                at = self._read_object(fragment, at)
            elif mode == _NESTED:
                at = self._read_nested(fragment, at)
            elif mode in (_SKIP_STRING, _KEY):
                at = self._read_string(fragment, at)
            elif mode == _START:
                at = self._read_start(fragment, at)
            else:
                break
        if not out:
            return ""
        text = "".join(out)
        self._parts.append(text)
        return text

    def _read_start(self, data: str, at: int) -> int:
        found = _NOT_SPACE.search(data, at)
        if found is None:
            return len(data)
        at = found.start()
        if data[at] == "{":
            self._mode, self._depth, self._expect = _OBJECT, 1, _EXPECT_KEY
        else:
            self._mode = _DONE
        return at + 1

    def _read_object(self, data: str, at: int) -> int:
        """One structural character of the root object (whitespace skipped)."""
        found = _NOT_SPACE.search(data, at)
        if found is None:
            return len(data)
        at = found.start()
        char = data[at]
        if char == '"':
            self._open_string()
        elif char == ":":
            self._expect = _EXPECT_VALUE
        elif char == ",":
            self._expect, self._matched = _EXPECT_KEY, False
        elif char == "{" or char == "[":
            self._mode, self._depth, self._return_mode = _NESTED, 2, _OBJECT
            self._expect, self._matched = _EXPECT_COMMA, False
        elif char == "}" or char == "]":
            self._mode = _DONE
        else:  # a number, a literal or garbage: not a string value
            self._expect, self._matched = _EXPECT_COMMA, False
        return at + 1

    def _open_string(self) -> None:
        if self._expect == _EXPECT_KEY:
            self._mode, self._expect = _KEY, _EXPECT_COLON
            self._key_chars.clear()
            self._key_length = 0
        elif self._expect == _EXPECT_VALUE and self._matched and not self._seen:
            self._mode = _TARGET
        else:
            self._mode, self._return_mode = _SKIP_STRING, _OBJECT
            self._expect, self._matched = _EXPECT_COMMA, False

    def _read_string(self, data: str, at: int) -> int:
        """Skip (or, for a key, collect) string text up to the closing quote."""
        collect = self._mode == _KEY
        if self._escaped:
            self._escaped = False
            if collect:
                self._collect(data[at])
            at += 1
        while True:
            found = _QUOTE_OR_BACKSLASH.search(data, at)
            if found is None:
                if collect:
                    self._collect(data[at:])
                return len(data)
            stop = found.start()
            if collect:
                self._collect(data[at:stop])
            if data[stop] == '"':
                self._close_string()
                return stop + 1
            if collect:
                self._collect(data[stop : stop + 2])
            if stop + 1 >= len(data):
                self._escaped = True
                return len(data)
            at = stop + 2

    def _collect(self, text: str) -> None:
        # A key longer than any sensible key is not ours: stop collecting it (bounded memory).
        self._key_length += len(text)
        if self._key_length <= _MAX_KEY_CHARS:
            self._key_chars.append(text)

    def _close_string(self) -> None:
        if self._mode == _KEY:
            self._mode = _OBJECT
            fits = self._key_length <= _MAX_KEY_CHARS
            self._matched = fits and self._decoded_key() == self._key
        else:
            self._mode = self._return_mode

    def _decoded_key(self) -> str | None:
        raw = "".join(self._key_chars)
        if "\\" not in raw:
            return raw
        decoded: list[str] = []
        at = 0
        while at < len(raw):
            found = raw.find("\\", at)
            if found < 0:
                decoded.append(raw[at:])
                break
            decoded.append(raw[at:found])
            escape = _decode_escape(raw, found)
            if escape is None:
                return None
            decoded.append(escape[0])
            at = escape[1]
        return "".join(decoded)

    def _read_nested(self, data: str, at: int) -> int:
        """Skip a nested object or array, strings included, back to the root object."""
        while True:
            found = _NESTED_SPECIAL.search(data, at)
            if found is None:
                return len(data)
            at = found.start() + 1
            char = data[at - 1]
            if char == '"':
                self._mode, self._return_mode = _SKIP_STRING, _NESTED
                return at
            if char == "{" or char == "[":
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth <= 1:
                    self._mode = _OBJECT
                    return at

    def _read_target(self, data: str, at: int, out: list[str]) -> int:
        """Decode value text up to the closing quote, holding back an incomplete escape."""
        while True:
            found = _QUOTE_OR_BACKSLASH.search(data, at)
            if found is None:
                if at < len(data):
                    out.append(data[at:])
                return len(data)
            stop = found.start()
            if stop > at:
                out.append(data[at:stop])
            if data[stop] == '"':
                self._mode, self._seen = _OBJECT, True
                self._expect, self._matched = _EXPECT_COMMA, False
                return stop + 1
            escape = _decode_escape(data, stop)
            if escape is None:
                self._pending = data[stop:]
                return len(data)
            out.append(escape[0])
            at = escape[1]
