"""Judging a crash trial: where its kill landed, and whether the resumed store is whole.

Where the kill landed is read from what it left behind: the run record (the state a resume
continues from, the step's scratch data), the stored log, and the requests the model got.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from loopwright.schemas import Message, RunRecord, ToolOutput
from loopwright.workflows.agent.invariants import check_log
from loopwright.workflows.agent.tools import LOST, envelope

from .plan import TrialPlan

LOST_RESULT = envelope(ToolOutput(status="error", content=LOST))

STATES = ("before_request", "mid_stream", "mid_tool", "during_persist")
"""Where kills must land over the trials (each at least once); see the TODO in
test_crash_resume.py for the state still missing."""


def landed(
    plan: TrialPlan,
    records: Mapping[str, RunRecord | None],
    log: Sequence[Message],
    requested: Sequence[tuple[int, int]],
) -> str:
    """Where the kill landed: in which turn's state the first unfinished run was left.

    `before_request` and `mid_stream` are told apart by whether the model got that step's
    request; `during_persist` means the step's messages were not all stored.
    """
    for turn in range(len(plan.turns)):
        record = records[plan.run_id(turn)]
        if record is None:  # the run's record is written overlapped with its first states
            return "mid_stream" if (turn, 0) in requested else "before_request"
        if record.status != "running":
            continue
        if record.state == "execute_tools":
            return "mid_tool"
        data: Mapping[str, Any] = record.data
        step = int(data.get("step") or 0)
        if record.state == "persist":
            stored = {m.id for m in log}
            assistant = data.get("assistant") or {}
            ids = [assistant.get("id"), *(m["id"] for m in data.get("tool_messages") or ())]
            if not all(i in stored for i in ids):
                return "during_persist"
            if not assistant.get("tool_calls"):
                return "after_persist"
            step += 1
        return "mid_stream" if (turn, step) in requested else "before_request"
    return "after_finish"


def open_intents(log: Sequence[Message]) -> set[str]:
    """Ids of the stored calls no stored tool message answers: at a kill, the calls whose
    intent was recorded and whose results were not stored."""
    answered = {m.tool_call_id for m in log if m.role == "tool"}
    return {c.id for m in log for c in m.tool_calls if c.id not in answered}


def verify(
    plan: TrialPlan,
    records: Mapping[str, RunRecord | None],
    log: Sequence[Message],
    context: Sequence[Message],
    effects: Sequence[str],
    lost: Collection[str],
) -> list[str]:
    """Every problem of the store after the resume (an empty list when it is whole).

    `lost`: the calls whose results the kill lost (intent recorded, result not checkpointed);
    exactly the non-idempotent ones among them must be answered with the `LOST` error."""
    problems = [str(v) for v in check_log(log, context)]  # I1 and I3 (ids unique, context)
    runs = [m.run_id for m in log]
    order = [r for i, r in enumerate(runs) if i == 0 or runs[i - 1] != r]
    expected_order = [plan.run_id(t) for t in range(len(plan.turns))][: len(order)]
    if order != expected_order:
        problems.append(f"the turns' messages are not whole turns in order: {order}")
    for turn in range(len(plan.turns)):
        problems += _check_turn(plan, turn, records[plan.run_id(turn)], log)
    problems += _check_effects(log, effects, lost)
    return problems


def _check_turn(
    plan: TrialPlan, turn: int, record: RunRecord | None, log: Sequence[Message]
) -> list[str]:
    run_id = plan.run_id(turn)
    stored = [m for m in log if m.run_id == run_id]
    if record is None:  # never started, or killed before its record: its input at most
        if [m.id for m in stored] not in ([], [f"{run_id}-user"]):
            return [f"{run_id} has no record but stored {[m.id for m in stored]}"]
        return []
    if record.status != "finished" or record.stop_reason != "final":
        return [f"{run_id} ended {record.status} ({record.stop_reason}): {record.error}"]
    got = [_shape(m) for m in stored]
    want = _expected(plan, turn)
    if len(got) != len(want) or not all(map(_matches, got, want)):
        return [f"{run_id} stored {got}, expected {want}"]
    return []


def _matches(got: tuple[Any, ...], want: tuple[Any, ...]) -> bool:
    # A charge's result may be lost (its tool is not idempotent): `_check_effects` judges when.
    if got == want:
        return True
    return want[0] == "tool" and want[2].startswith("charged") and got == (*want[:2], "lost")


def _shape(message: Message) -> tuple[Any, ...]:
    if message.role == "assistant":
        return ("assistant", message.content, tuple(c.id for c in message.tool_calls))
    if message.role == "tool":
        content = message.content or ""
        return ("tool", message.tool_call_id, "lost" if content == LOST_RESULT else content)
    return (message.role, message.content)


def _expected(plan: TrialPlan, turn: int) -> list[tuple[Any, ...]]:
    want: list[tuple[Any, ...]] = [("user", plan.user_text(turn))]
    for step in plan.turns[turn]:
        if not step.calls:
            want.append(("assistant", step.text, ()))
            continue
        want.append(("assistant", step.text or None, tuple(c.id for c in step.calls)))
        want += [("tool", c.id, _result(c.tool, c.id)) for c in step.calls]
    return want


def _result(tool: str, token: str) -> str:
    return f"{'charged' if tool == 'charge' else 'found'} {token}"


def _check_effects(
    log: Sequence[Message], effects: Sequence[str], lost: Collection[str]
) -> list[str]:
    problems = []
    calls = {c.id: c.name for m in log for c in m.tool_calls}
    results = {m.tool_call_id: m.content for m in log if m.role == "tool"}
    ran = Counter(effects)
    for line, count in ran.items():
        tool, _, token = line.partition(" ")
        if calls.get(token) != tool:
            problems.append(f"side effect {line!r} of a call the log does not have")
        if tool == "charge" and count > 1:
            problems.append(f"non-idempotent call {token} ran {count} times")
    for call, tool in calls.items():
        result = results.get(call)
        if (result == LOST_RESULT) != (tool == "charge" and call in lost):
            problems.append(
                f"{tool} {call} answered {result!r}; its result was lost: {call in lost}"
            )
        elif result != LOST_RESULT and ran[f"{tool} {call}"] == 0:
            problems.append(f"{tool} {call} answered {result!r} but never ran")
    return problems
