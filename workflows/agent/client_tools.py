"""Client-side tools: the calls the HTTP client runs, and answering them at the next turn.

A client (a voice platform) sends OpenAI `tools` of its own, e.g. `end_call`. The model is
offered them beside the agent's tools; their calls are streamed back to the client, never run
here, and the turn ends. The stored log then ends with calls nobody answered yet: the next
turn's input answers them first, with the client's `tool` messages where it sent them and an
error the model can act on where it did not (the user spoke instead), so every request and the
stored log keep each call paired with exactly one result (I1).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import attrs

from loopwright.schemas import Message, ToolCall, ToolOutput

from .tools import envelope

_log = logging.getLogger("loopwright.agent")

NO_RESULT = "the client returned no result for this call"
"""The error a call the client never answered gets (the model may call it again)."""


def tool_name(entry: Mapping[str, Any]) -> str | None:
    """The function name of an OpenAI `tools` entry (None when it has none)."""
    function = entry.get("function")
    name = function.get("name") if isinstance(function, Mapping) else None
    return name if isinstance(name, str) and name else None


def offered_client_tools(
    entries: Iterable[Mapping[str, Any]], own: Collection[str]
) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The client's entries to offer the model, and the names dropped because the agent has a
    tool of that name (the agent's own tool wins: it is the one that runs)."""
    offered: list[Mapping[str, Any]] = []
    clashes: list[str] = []
    for entry in entries:
        name = tool_name(entry)
        if name is not None and name in own:
            clashes.append(name)
        else:
            offered.append(entry)
    return offered, clashes


def client_names(entries: Iterable[Mapping[str, Any]], own: Collection[str]) -> frozenset[str]:
    """Names whose calls go back to the client (a client name the agent also has is not one)."""
    return frozenset(n for n in map(tool_name, entries) if n is not None and n not in own)


def split_calls(
    calls: Sequence[ToolCall], client: Collection[str]
) -> tuple[tuple[ToolCall, ...], tuple[ToolCall, ...]]:
    """(the agent's own calls, the client's calls), each in call order."""
    if not client:
        return tuple(calls), ()
    own = tuple(c for c in calls if c.name not in client)
    theirs = tuple(c for c in calls if c.name in client)
    return own, theirs


def open_calls(context: Sequence[Message]) -> list[ToolCall]:
    """Calls of the context's last assistant message that no tool message after it answers."""
    answered: set[str] = set()
    for message in reversed(context):
        if message.role == "tool":
            if message.tool_call_id is not None:
                answered.add(message.tool_call_id)
            continue
        if message.role != "assistant":
            return []
        return [c for c in message.tool_calls if c.id not in answered]
    return []


def answer_id(run_id: str, call_id: str) -> str:
    """The id of the answer a run writes for an unanswered call: the same on every replay."""
    return f"{run_id}.answer.{call_id}"


def _no_result(run_id: str, call: ToolCall, spoke: bool, now: float) -> Message:
    error = NO_RESULT + (" (the user spoke instead)" if spoke else "")
    return Message(
        id=answer_id(run_id, call.id),
        role="tool",
        content=envelope(ToolOutput(status="error", content=error)),
        tool_call_id=call.id,
        name=call.name,
        run_id=run_id,
        created_at=now,
    )


def turn_inputs(
    context: Sequence[Message], inputs: Sequence[Message], *, run_id: str, now: float
) -> tuple[Message, ...]:
    """The turn's input as it is stored and sent: an answer for every open call first (the
    client's, or a synthesized error), then the caller's other messages.

    Messages already in the context are skipped (a replay after the input was stored), and a
    tool message answering no open call, or one answered already, is dropped with a warning:
    it would leave a result with no call before it.
    """
    known = {m.id for m in context}
    pending = open_calls(context)
    by_id = {c.id: c for c in pending}
    given: dict[str, Message] = {}
    rest: list[Message] = []
    for message in inputs:
        if message.id in known:
            continue
        if message.role != "tool":
            rest.append(message)
            continue
        call = by_id.get(message.tool_call_id or "")
        if call is None or call.id in given:
            _log.warning(
                "run %s: dropped tool message %r: it answers %r, which is not an open call "
                "of the agent's last reply (open: %s)",
                run_id,
                message.id,
                message.tool_call_id,
                sorted(by_id) or "none",
            )
            continue
        given[call.id] = message if message.name else attrs.evolve(message, name=call.name)
    if not pending:
        return tuple(rest)
    spoke = any(m.role == "user" for m in rest)
    answers = [given.get(c.id) or _no_result(run_id, c, spoke, now) for c in pending]
    return (*answers, *rest)
