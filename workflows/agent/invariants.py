"""The agent loop's invariants (DESIGN §6) as pure checks of what a run left behind.

Each `check_*` returns the violations it finds (an empty list when the invariant holds), so a
test reports every broken invariant at once and the testing kit can run the same checks on
any store, LLM or workflow copy. Messages are stored `Message`s or OpenAI wire dicts alike.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from attrs import frozen

from loopwright.schemas import (
    TERMINAL_EVENTS,
    Block,
    Event,
    Message,
    RunFailed,
    RunFinished,
    RunRecord,
    TextDelta,
    Workflow,
)

from .prompt import render_blocks
from .request import to_openai
from .speech import spoken_text

MessageLike = Message | Mapping[str, Any]
"""A stored message or its OpenAI wire form."""


@frozen
class Violation:
    """One broken invariant: which one, and what was seen."""

    invariant: str
    """`I1` ... `I6`, or `seen=stored` (what the model saw equals what is stored)."""
    message: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.message}"


def _role(message: MessageLike) -> str:
    return str(message.role if isinstance(message, Message) else message.get("role"))


def _call_ids(message: MessageLike) -> list[str]:
    if isinstance(message, Message):
        return [call.id for call in message.tool_calls]
    return [str(call.get("id")) for call in message.get("tool_calls") or ()]


def _answers(message: MessageLike) -> str | None:
    if isinstance(message, Message):
        return message.tool_call_id
    answered = message.get("tool_call_id")
    return None if answered is None else str(answered)


def check_tool_pairing(
    messages: Sequence[MessageLike], *, where: str = "messages", open_end: bool = False
) -> list[Violation]:
    """I1: each assistant message with tool calls is followed, before any other message, by
    exactly one tool message per call id; no tool message answers a call not open there.

    `open_end` allows calls still unanswered at the very end (a client-side tool call)."""
    found: list[Violation] = []
    pending: list[str] = []
    answered: set[str] = set()
    opened_at = -1

    def close(at: int) -> None:
        missing = [i for i in pending if i not in answered]
        if missing and not (open_end and at == len(messages)):
            found.append(
                Violation(
                    "I1",
                    f"{where}[{opened_at}]: calls {missing} have no tool message before "
                    f"{where}[{at}]",
                )
            )

    for at, message in enumerate(messages):
        if _role(message) == "tool":
            call = _answers(message)
            if call not in pending:
                found.append(
                    Violation(
                        "I1",
                        f"{where}[{at}]: tool message for {call!r} answers "
                        "no call of the assistant message before it",
                    )
                )
            elif call in answered:
                found.append(Violation("I1", f"{where}[{at}]: call {call!r} answered twice"))
            else:
                answered.add(call)
            continue
        close(at)
        pending, answered, opened_at = [], set(), at
        if _role(message) == "assistant":
            pending = _call_ids(message)
            if len(set(pending)) != len(pending):
                found.append(Violation("I1", f"{where}[{at}]: repeated call ids {pending}"))
    close(len(messages))
    return found


def check_system_first(body: Mapping[str, Any], blocks: Iterable[Block]) -> list[Violation]:
    """I2: the request starts with exactly one system message, which shows every memory
    block's current value (the blocks as `render_blocks` writes them, in label order)."""
    messages = body.get("messages") or []
    roles = [_role(m) for m in messages]
    if not roles or roles[0] != "system":
        return [Violation("I2", f"the request does not start with a system message: {roles}")]
    found = []
    if roles.count("system") != 1:
        found.append(Violation("I2", f"{roles.count('system')} system messages: {roles}"))
    rendered = render_blocks(sorted(blocks, key=lambda b: b.label))
    system = messages[0].get("content") or ""
    if rendered not in system:
        found.append(
            Violation(
                "I2",
                f"the system message does not show the current blocks {rendered!r}; it is "
                f"{system!r}",
            )
        )
    return found


def check_log(
    log: Sequence[Message], context: Sequence[Message], *, open_end: bool = False
) -> list[Violation]:
    """I3 and I1 on the store: ids are unique, the in-context list is a subsequence of the
    log (same messages, same order), and tool calls pair up in both (`open_end`: calls to the
    client's tools may still be open at the end)."""
    found: list[Violation] = []
    ids = [m.id for m in log]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        found.append(Violation("I3", f"messages stored more than once: {repeated}"))
    at = 0
    for message in context:
        while at < len(log) and log[at] != message:
            at += 1
        if at == len(log):
            found.append(
                Violation(
                    "I3", f"in-context message {message.id!r} is not in the log in that order"
                )
            )
            break
        at += 1
    found += check_tool_pairing(log, where="log", open_end=open_end)
    found += check_tool_pairing(context, where="context", open_end=open_end)
    return found


def check_stored_once(produced: Sequence[Message], log: Sequence[Message]) -> list[Violation]:
    """I3: every produced message is in the log exactly once, as produced, in produced order."""
    found: list[Violation] = []
    positions = []
    for message in produced:
        hits = [i for i, stored in enumerate(log) if stored.id == message.id]
        if len(hits) != 1:
            found.append(Violation("I3", f"{message.id!r} is stored {len(hits)} times"))
        elif log[hits[0]] != message:
            found.append(
                Violation(
                    "I3", f"{message.id!r} was stored as {log[hits[0]]!r}, produced as {message!r}"
                )
            )
        else:
            positions.append(hits[0])
    if positions != sorted(positions):
        found.append(Violation("I3", f"messages stored out of order (log positions {positions})"))
    return found


def check_terminal(events: Sequence[Event]) -> list[Violation]:
    """I5: exactly one terminal event (`RunFinished` or `RunFailed`), and it comes last."""
    terminals = [i for i, e in enumerate(events) if isinstance(e, TERMINAL_EVENTS)]
    if len(terminals) != 1 or terminals[0] != len(events) - 1:
        tail = [type(e).__name__ for e in events[-3:]]
        return [Violation("I5", f"terminal events at {terminals} of {len(events)}; ends {tail}")]
    return []


def _cap(value: int | str | None, params: Mapping[str, Any]) -> int | None:
    return params.get(value) if isinstance(value, str) else value


def check_run_end(
    record: RunRecord, events: Sequence[Event], workflow: Workflow
) -> list[Violation]:
    """I4: the run ended, in a final state or with an explicit stop reason, within its caps,
    and its terminal event says what its record says."""
    found: list[Violation] = []
    if record.status not in ("finished", "failed", "cancelled") or not record.stop_reason:
        found.append(
            Violation(
                "I4",
                f"run {record.id} did not end: {record.status} "
                f"at {record.state!r} (stop reason {record.stop_reason!r})",
            )
        )
    if record.stop_reason == "final" and not workflow.states[record.state].final:
        found.append(Violation("I4", f"stop reason `final` in non-final state {record.state!r}"))
    counters, caps = record.counters, workflow.limits
    for counter, cap in (("steps", caps.max_steps), ("transitions", caps.max_transitions)):
        limit = _cap(cap, record.params)
        if limit is not None and counters.get(counter, 0) > limit:
            found.append(Violation("I4", f"{counter} {counters.get(counter)} past its cap {limit}"))
    last = events[-1] if events else None
    expected: Event | None = None
    if record.error is not None:
        expected = RunFailed(record.error.code, record.error.message, record.error.retryable)
    elif record.stop_reason:
        expected = RunFinished(record.stop_reason)
    if last != expected:
        found.append(Violation("I4", f"terminal event {last!r}, record says {expected!r}"))
    return found


def check_spoken(
    events: Sequence[Event],
    turn: Sequence[Message],
    *,
    pre_exec: bool = True,
    client_tools: Collection[str] = (),
) -> list[Violation]:
    """I6: the text the client received equals the assistant text stored for the turn
    (pre-exec speech included when the loop speaks it; never that of the client's tools)."""
    heard = "".join(e.text for e in events if isinstance(e, TextDelta))
    stored = spoken_text(turn, pre_exec=pre_exec, client_tools=client_tools)
    if heard != stored:
        return [Violation("I6", f"the client received {heard!r}, the store says {stored!r}")]
    return []


def check_request_matches(body: Mapping[str, Any], stored: Sequence[Message]) -> list[Violation]:
    """What the model saw equals what is stored: the request's messages after the system
    message are the stored messages, in wire form, in order."""
    sent = list(body.get("messages") or [])[1:]
    wire = [to_openai(m) for m in stored]
    if sent == wire:
        return []
    at = next((i for i, (a, b) in enumerate(zip(sent, wire, strict=False)) if a != b), None)
    if at is None:
        return [
            Violation(
                "seen=stored",
                f"the model saw {len(sent)} messages after the system "
                f"message, the store has {len(wire)}",
            )
        ]
    return [
        Violation(
            "seen=stored",
            f"message {at + 1}: the model saw {sent[at]!r}, the store has {wire[at]!r}",
        )
    ]
