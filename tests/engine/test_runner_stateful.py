"""Stateful property test of the runner over random valid workflows.

Random workflows (engine.testing.workflow_strategies) run with random outcomes, step errors,
crashes and cancellations. After each run: exactly one terminal event, the states visited
follow declared transitions only, caps hold, and a run crashed at any point then resumed ends
in the same final state with the same visited sequence as the uninterrupted run.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from loopwright.engine import Compiled, Engine, Outcome, Registry, StepError, handler
from loopwright.engine.testing.memory import ManualClock, MemoryRunStore, SequentialIds
from loopwright.engine.testing.workflow_strategies import GUARDS, GeneratedWorkflow, valid_workflows
from loopwright.engine.validate import validate
from loopwright.schemas import (
    TERMINAL_EVENTS,
    Event,
    RunFailed,
    RunFinished,
    RunRecord,
    Workflow,
    converter,
)

CODES = ("server_error", "rate_limited", "timeout", "auth")


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, nothing is written."""


def _pick(seed: int, *parts: object) -> int:
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Oracle:
    """Decides every outcome, error and guard from (seed, state, seq, attempt): replayable."""

    def __init__(self, seed: int, error_rate: int, crash_seq: int | None = None) -> None:
        self.seed = seed
        self.error_rate = error_rate
        self.crash_seq = crash_seq
        self.crashed = False

    def outcome(self, ctx: Any, declared: tuple[str, ...]) -> str:
        if self.crash_seq is not None and ctx.seq == self.crash_seq and not self.crashed:
            self.crashed = True
            raise Crash
        roll = _pick(self.seed, "err", ctx.state, ctx.seq, ctx.attempt)
        if roll % 100 < self.error_rate:
            code = CODES[roll // 100 % len(CODES)]
            raise StepError(code, f"{code} at {ctx.state}", retry_after=0.0)
        return declared[_pick(self.seed, "out", ctx.state, ctx.seq) % len(declared)]

    def guard(self, ref: str, ctx: Any) -> bool:
        return _pick(self.seed, "guard", ref, ctx.state, ctx.seq) % 2 == 0


def _registry(gen: GeneratedWorkflow) -> Registry:
    registry = Registry().merged(gen.registry)
    for state, declared in gen.outcomes.items():

        @handler(outcomes=declared)
        async def decide(ctx: Any, declared: tuple[str, ...] = declared) -> Outcome:
            return Outcome(ctx.service("oracle").outcome(ctx, declared))

        registry.add_handler(f"gen.{state}", decide)
    return registry


def _compile(gen: GeneratedWorkflow) -> Compiled:
    raw = dict(gen.raw)
    raw["states"] = {
        name: {**state, "retry": {**state["retry"], "backoff_ms": 0}} if "retry" in state else state
        for name, state in raw["states"].items()
    }
    return validate(converter.structure(raw, Workflow), _registry(gen), source="<generated>")


def _engine(store: MemoryRunStore, oracle: Oracle, compiled: Compiled) -> Engine:
    engine = Engine(
        store=store,
        clock=ManualClock(),
        ids=SequentialIds(),
        services={"oracle": oracle, GUARDS: oracle.guard},
    )
    engine.add_workflow(compiled)
    return engine


async def _run(
    engine: Engine, compiled: Compiled, *, stop_after: int | None = None
) -> tuple[list[Event], RunRecord, Any]:
    run = engine.start(compiled, run_id="run-x")
    events: list[Event] = []
    crashed: Any = None
    try:
        async with run:
            async for event in run:
                events.append(event)
                if stop_after is not None and len(events) >= stop_after:
                    break
    except Crash as crash:
        crashed = crash
    await engine.drain()
    stored = await engine.store.load("run-x")
    return events, stored or run.record, crashed


class RunnerMachine(RuleBasedStateMachine):
    """Drives one random valid workflow through many runs."""

    def __init__(self) -> None:
        super().__init__()
        self.gen: GeneratedWorkflow | None = None
        self.compiled: Compiled | None = None
        self.runs = 0

    @initialize(gen=valid_workflows(max_states=5))
    def load(self, gen: GeneratedWorkflow) -> None:
        self.gen = gen
        self.compiled = _compile(gen)

    def _check(self, events: list[Event], record: RunRecord) -> None:
        assert self.compiled is not None
        wf = self.compiled.workflow
        terminals = [e for e in events if isinstance(e, TERMINAL_EVENTS)]
        assert len(terminals) == 1 and events[-1] is terminals[0], events
        path = [*record.visited, record.state]
        for here, there in itertools.pairwise(path):
            targets = {b.to for branches in wf.states[here].on.values() for b in branches}
            assert there in targets, f"{here} -> {there} is not a declared transition"
        caps = self.compiled.workflow.limits
        if isinstance(caps.max_transitions, int):
            assert record.counters.get("transitions", 0) <= caps.max_transitions
        went_background = any(wf.states[s].background for s in path)
        if isinstance(terminals[0], RunFinished) and terminals[0].stop_reason == "final":
            # The consumer's terminal comes when the background part starts; that part may
            # still end elsewhere (a failure), which the record then says.
            assert wf.states[record.state].final or went_background
        if isinstance(terminals[0], RunFailed):
            assert record.status == "failed"
        elif went_background:
            assert record.status in ("finished", "failed"), record.status
        else:
            assert record.status in ("finished", "cancelled"), record.status

    @rule(seed=st.integers(0, 2**32), error_rate=st.sampled_from([0, 10, 30]))
    def run_to_the_end(self, seed: int, error_rate: int) -> None:
        assert self.compiled is not None
        engine = _engine(MemoryRunStore(), Oracle(seed, error_rate), self.compiled)
        events, record, crashed = asyncio.run(_run(engine, self.compiled))
        assert crashed is None
        self._check(events, record)
        self.runs += 1

    @rule(seed=st.integers(0, 2**32), crash_seq=st.integers(0, 12))
    def crash_then_resume(self, seed: int, crash_seq: int) -> None:
        assert self.compiled is not None
        if self.compiled.workflow.durability == "exit":
            return  # nothing is written before the end: a crash loses the run by design
        clean = _engine(MemoryRunStore(), Oracle(seed, 10), self.compiled)
        _, expected, _ = asyncio.run(_run(clean, self.compiled))

        store = MemoryRunStore()
        oracle = Oracle(seed, 10, crash_seq=crash_seq)
        _, crashed_record, crashed = asyncio.run(
            _run(_engine(store, oracle, self.compiled), self.compiled)
        )
        if crashed is None and crashed_record.status in ("finished", "failed"):
            assert (crashed_record.state, crashed_record.visited) == (
                expected.state,
                expected.visited,
            )
            return

        async def resume() -> tuple[list[Event], RunRecord]:
            engine = _engine(store, oracle, self.compiled)  # type: ignore[arg-type]
            events = [e async for e in await engine.resume("run-x")]
            await engine.drain()
            final = await store.load("run-x")
            assert final is not None
            return events, final

        events, final = asyncio.run(resume())
        assert isinstance(events[-1], TERMINAL_EVENTS)
        assert (final.state, final.visited, final.status, final.stop_reason) == (
            expected.state,
            expected.visited,
            expected.status,
            expected.stop_reason,
        )

    @rule(seed=st.integers(0, 2**32), after=st.integers(1, 6))
    def consumer_stops_early(self, seed: int, after: int) -> None:
        assert self.compiled is not None
        engine = _engine(MemoryRunStore(), Oracle(seed, 0), self.compiled)
        events, record, _ = asyncio.run(_run(engine, self.compiled, stop_after=after))
        if not any(isinstance(e, TERMINAL_EVENTS) for e in events):
            assert record.status == "cancelled" and record.stop_reason == "cancelled"
        else:
            self._check(events, record)

    @invariant()
    def compiled_once(self) -> None:
        assert self.gen is None or self.compiled is not None


TestRunnerMachine = RunnerMachine.TestCase
TestRunnerMachine.settings = settings(
    parent=settings.get_profile(settings._current_profile or "default"),  # type: ignore[attr-defined]
    stateful_step_count=6,
)
