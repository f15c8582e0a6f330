"""What one crash trial does: its turns, the scripted model's answers, and where the kill aims.

A plan is drawn from a seeded `random.Random`, so a failing trial is replayed from its number
and seed. The model is a responder keyed on the conversation (the turn, and the steps already
answered in it), not a queue: a request repeated after a crash gets the same answer, the same
call ids included, so a call that ran twice would show in the side-effect file.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
from attrs import frozen

from loopwright.engine.testing.chunks import (
    CallSpec,
    Delay,
    Response,
    Step,
    text_reply,
    tool_calls_reply,
)

AIMS = ("request", "stream", "execute_tools", "persist", None)
"""The state a kill aims at (None: a random moment of the whole trial)."""
HOLD_MS = 200
"""A kill aimed at a state's start lands while the worker holds there, before the handler."""
TOOLS_MODULE = "tests.reliability.crash_tools"
_TURN = re.compile(r"^trial (\d+) turn (\d+)$")


@frozen
class CallPlan:
    """One scripted tool call; the call id is also its `token` (one effect line per id)."""

    id: str
    tool: str
    before_ms: int
    after_ms: int

    def spec(self) -> CallSpec:
        arguments = {
            "pre_exec_msg": "One moment.",
            "token": self.id,
            "before_ms": self.before_ms,
            "after_ms": self.after_ms,
        }
        return CallSpec(id=self.id, name=self.tool, arguments=json.dumps(arguments))


@frozen
class StepPlan:
    """One model answer: tool calls (a tool step) or text only (the turn's last step)."""

    calls: tuple[CallPlan, ...]
    text: str
    first_ms: int
    """Time to the first chunk."""
    gaps_ms: tuple[int, ...]
    """Pause after each later chunk (cycled)."""

    def response(self) -> Response:
        if self.calls:
            reply = tool_calls_reply([c.spec() for c in self.calls], text=self.text, fragments=2)
        else:
            reply = text_reply(self.text, parts=3)
        steps: list[Step] = [Delay(self.first_ms / 1000)]
        for i, step in enumerate(reply.steps):
            steps.append(step)
            gap = self.gaps_ms[i % len(self.gaps_ms)]
            if gap:
                steps.append(Delay(gap / 1000))
        return Response(steps=tuple(steps))

    def stream_ms(self) -> int:
        chunks = 3 + 3 * len(self.calls) + (3 if self.text else 0)
        return self.first_ms + sum(self.gaps_ms) * chunks // len(self.gaps_ms)

    def tools_ms(self) -> int:
        return max((c.before_ms + c.after_ms for c in self.calls), default=0)


@frozen
class TrialPlan:
    """One trial: its turns (each a tuple of steps) and where its kill aims."""

    trial: int
    seed: int
    turns: tuple[tuple[StepPlan, ...], ...]
    pause_ms: int
    """The worker's pause after each state is entered (before its handler runs)."""
    aim: str | None
    occurrence: int
    """Which entry into the aimed state (0-based, over the whole trial): for `stream`, which
    request reaching the model; for None, unused."""
    delay_ms: int
    """After that entry (for `stream`: after the model got the request); for None, after the
    trial's first request reached the model (a random moment of the rest of the trial)."""
    hold_ms: int = 0
    """The worker's pause at the aimed entry instead of `pause_ms` (the kill lands in it)."""

    def hold(self) -> list[Any] | None:
        """The worker's `hold`: [state, occurrence, ms], or None."""
        return [self.aim, self.occurrence, self.hold_ms] if self.hold_ms else None

    @property
    def agent(self) -> str:
        """The trial's agent (its name; the id is `agent-` and the name)."""
        return f"crash-{self.trial}"

    def run_id(self, turn: int) -> str:
        return f"run-{self.trial}-{turn}"

    def owns(self, call_id: str) -> bool:
        return call_id.startswith(f"call-{self.trial}-")

    def user_text(self, turn: int) -> str:
        return f"trial {self.trial} turn {turn}"

    def entries(self, state: str) -> int:
        """How often `state` is entered by a trial that is not killed."""
        steps = [s for turn in self.turns for s in turn]
        if state == "execute_tools":
            return sum(1 for s in steps if s.calls)
        return len(steps)

    def total_ms(self) -> int:
        """About how long the trial takes unkilled (the pauses included)."""
        steps = [s for turn in self.turns for s in turn]
        states = sum(5 if s.calls else 4 for s in steps) + len(self.turns)
        return states * self.pause_ms + sum(s.stream_ms() + s.tools_ms() for s in steps)


def make_plan(trial: int, seed: int) -> TrialPlan:
    """The plan of trial `trial`: its aim cycles over `AIMS`, the rest is drawn from the seed."""
    rng = random.Random(f"{seed}:{trial}")
    turns = tuple(_turn(rng, trial, k) for k in range(rng.choice((1, 2, 2))))
    aim = AIMS[trial % len(AIMS)]
    plan = TrialPlan(
        trial=trial,
        seed=seed,
        turns=turns,
        pause_ms=rng.randint(0, 8),
        aim=aim,
        occurrence=0,
        delay_ms=0,
    )
    if aim is None:
        return attrs.evolve(plan, delay_ms=rng.randint(0, plan.total_ms()))
    # `stream` counts the requests the model gets: one per step.
    occurrence = rng.randrange(plan.entries(aim))
    step = _nth_entry(plan, aim, occurrence)
    hold = 0
    if aim == "stream":
        delay = rng.randint(0, step.stream_ms())
    elif aim == "execute_tools":  # inside the calls, not at their edges
        delay = plan.pause_ms + rng.randint(step.tools_ms() // 5, step.tools_ms() * 4 // 5)
    else:  # before the state's handler starts, in a hold wide enough for a busy machine
        hold = HOLD_MS
        delay = rng.randint(0, hold // 2)
    return attrs.evolve(plan, occurrence=occurrence, delay_ms=delay, hold_ms=hold)


def _nth_entry(plan: TrialPlan, state: str, occurrence: int) -> StepPlan:
    steps = [s for turn in plan.turns for s in turn if s.calls or state != "execute_tools"]
    return steps[occurrence]


def _turn(rng: random.Random, trial: int, turn: int) -> tuple[StepPlan, ...]:
    steps = []
    for step in range(rng.choice((1, 1, 2))):
        calls = tuple(
            CallPlan(
                id=f"call-{trial}-{turn}-{step}-{i}",
                tool="charge" if i == 0 or rng.random() < 0.5 else "lookup",
                before_ms=rng.randint(0, 20),
                after_ms=rng.randint(30, 80),
            )
            for i in range(rng.choice((1, 1, 2, 3)))
        )
        text = rng.choice(("", "", "Let me see."))
        steps.append(_step(rng, calls, text))
    steps.append(_step(rng, (), f"Turn {turn} done."))
    return tuple(steps)


def _step(rng: random.Random, calls: tuple[CallPlan, ...], text: str) -> StepPlan:
    gaps = tuple(rng.choice((0, 0, 2, 5, 10)) for _ in range(3))
    return StepPlan(calls=calls, text=text, first_ms=rng.randint(5, 30), gaps_ms=gaps)


def turn_of(body: Mapping[str, Any]) -> tuple[int, int, int] | None:
    """(trial, turn, step) of a request: the last user message names the trial and the turn;
    the assistant messages after it are the steps answered already."""
    messages: Sequence[Mapping[str, Any]] = body.get("messages") or ()
    for at in range(len(messages) - 1, -1, -1):
        message = messages[at]
        if message.get("role") != "user":
            continue
        found = _TURN.match(str(message.get("content")))
        if found is None:
            return None
        step = sum(1 for m in messages[at + 1 :] if m.get("role") == "assistant")
        return int(found.group(1)), int(found.group(2)), step
    return None


class Seen(Protocol):
    """Where the model notes the (turn, step) of each request of a trial."""

    def append(self, key: tuple[int, int], /) -> None: ...


def responder(plans: Mapping[int, TrialPlan], seen: Mapping[int, Seen]) -> Callable[..., Response]:
    """The model of a batch of trials: each request is answered by its trial's plan at its
    (turn, step), which is appended to `seen[trial]` (a list, or a queue to wait on)."""

    def respond(body: Mapping[str, Any]) -> Response:
        key = turn_of(body)
        plan = plans.get(key[0]) if key is not None else None
        if key is None or plan is None or not _planned(plan, key[1], key[2]):
            raise AssertionError(f"a request no trial planned: {key}")
        seen[plan.trial].append(key[1:])
        return plan.turns[key[1]][key[2]].response()

    return respond


def _planned(plan: TrialPlan, turn: int, step: int) -> bool:
    return turn < len(plan.turns) and step < len(plan.turns[turn])
