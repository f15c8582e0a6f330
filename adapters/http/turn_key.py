"""Ids for a turn's input messages, and their conversion to stored messages.

A client may send the same turn several times (LiveKit retries an identical body up to three
more times before the first content chunk). The ids of the input messages are derived from
the turn itself, so a repeated turn writes the same ids and the store keeps it once, while a
different turn gets different ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from loopwright.schemas import Message

from .request import WireMessage

__all__ = ["input_ids", "to_messages"]

_ROLES = frozenset({"system", "user", "assistant", "tool"})


def input_ids(
    agent_id: str, session: str, anchor: str | None, messages: Sequence[WireMessage]
) -> tuple[str, ...]:
    """`msg-<hex>` ids: each a hash of the agent, session, anchor and the messages up to and
    including it (position, role, content, tool calls, tool_call_id, name)."""
    h = hashlib.blake2b(digest_size=16, person=b"loopwright-turn")
    _feed(h, agent_id, session, anchor)
    ids = []
    for position, message in enumerate(messages):
        _feed(h, str(position), message.role, message.content, message.tool_call_id)
        _feed(h, message.name, str(len(message.tool_calls)))
        for call in message.tool_calls:
            _feed(h, call.id, call.name, call.arguments)
        ids.append("msg-" + h.copy().hexdigest())
    return tuple(ids)


def to_messages(
    wire: Sequence[WireMessage], ids: Sequence[str], run_id: str, now: float
) -> tuple[Message, ...]:
    """The turn's input as stored messages of run `run_id`, one id per message."""
    if len(ids) != len(wire):
        raise ValueError(
            f"{len(wire)} messages but {len(ids)} ids; pass one id per message (from input_ids)"
        )
    out = []
    for message, message_id in zip(wire, ids, strict=True):
        if message.role not in _ROLES:
            raise ValueError(
                f"role {message.role!r} cannot be stored; parse requests with "
                "parse_chat_request, which maps every accepted role to system/user/assistant/tool"
            )
        out.append(
            Message(
                id=message_id,
                role=message.role,
                content=message.content,
                tool_calls=message.tool_calls,
                tool_call_id=message.tool_call_id,
                name=message.name,
                run_id=run_id,
                created_at=now,
            )
        )
    return tuple(out)


def _feed(h: hashlib.blake2b, *parts: str | None) -> None:
    # Length-prefixed, None distinct from "": no two different inputs feed the same bytes.
    for part in parts:
        if part is None:
            h.update(b"\x00")
            continue
        data = part.encode("utf-8", "surrogatepass")
        h.update(b"\x01" + len(data).to_bytes(8, "little") + data)
