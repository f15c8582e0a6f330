"""Which conversation a request belongs to: the session key.

Clients that say so are believed, in this order: LiveKit's `X-LiveKit-Session-ID` header,
Open WebUI's `X-OpenWebUI-Chat-Id` header, Vapi's `call.id` (`call.callId` before 2025), the
`user` field (a string, or an object's `id`). A client that says nothing gets a hash of its
transcript's opening (its leading system message and its first other message), which does
not change as the transcript grows, so every turn of one conversation maps to one session.
A greeting turn, with no other message yet, hashes differently from the turns after it: a
client that opens with a greeting should send one of the identifiers above.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from .request import ChatRequest

__all__ = ["session_key"]

_HEADERS = (("x-livekit-session-id", "livekit"), ("x-openwebui-chat-id", "owui"))
_MAX_PLAIN = 64
"""Longer identifiers (or ones with control characters) are hashed to keep keys short."""


def session_key(headers: Mapping[str, str], request: ChatRequest) -> str:
    """The request's session key, prefixed by its source (`livekit:`, `owui:`, `call:`,
    `user:`, `hash:`); header names are matched case-insensitively."""
    lowered = {name.lower(): value for name, value in headers.items()}
    for header, source in _HEADERS:
        value = lowered.get(header, "").strip()
        if value:
            return _key(source, value)
    call = request.extra.get("call")
    if isinstance(call, Mapping):
        for field in ("id", "callId"):
            if found := _identifier(call.get(field)):
                return _key("call", found)
    user = _identifier(request.user) or _object_id(request.extra.get("user"))
    if user:
        return _key("user", user)
    return "hash:" + _transcript_hash(request)


def _object_id(value: object) -> str | None:
    return _identifier(value.get("id")) if isinstance(value, Mapping) else None


def _identifier(value: object) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _key(source: str, value: str) -> str:
    if len(value) <= _MAX_PLAIN and value.isprintable():
        return f"{source}:{value}"
    return f"{source}:{_digest(value)}"


def _transcript_hash(request: ChatRequest) -> str:
    # The leading system message, not any: a trailing instruction must not move the key.
    messages = request.messages
    system = messages[0].content or "" if messages and messages[0].role == "system" else None
    first = next((m for m in messages if m.role != "system"), None)
    return _digest(system, first.role if first else None, first.content if first else None)


def _digest(*parts: str | None) -> str:
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        if part is None:
            h.update(b"\x00")
            continue
        data = part.encode("utf-8", "surrogatepass")
        h.update(b"\x01" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()
