"""Engine cost: µs per state transition and memory per live run, against a hand-written loop.

Run: `python benchmarks/bench_engine.py` (one process, interleaved rounds, medians).
Targets (issue 2): <= 30 µs per transition; starting a run costs the same with 10 or 10,000
live runs.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import tracemalloc
from typing import Any

from loopwright.engine import Engine, Outcome, Registry, handler
from loopwright.engine.testing.memory import MemoryRunStore
from loopwright.engine.validate import validate
from loopwright.schemas import Custom, Workflow, converter

TRANSITIONS = 2_000


@handler(outcomes=["next"])
async def step(ctx: Any) -> str:
    return "next"


@handler(outcomes=["next"])
async def wait_forever(ctx: Any) -> Any:
    yield Custom("parked")  # an event, then it parks
    await asyncio.Event().wait()
    yield Outcome("next")


def workflow(durability: str, first: str = "step") -> Any:
    raw = {
        "name": f"bench-{durability}-{first}",
        "initial": "a",
        "durability": durability,
        "params": {"n": TRANSITIONS // 2},
        "limits": {"max_transitions": TRANSITIONS * 2},
        "guards": {"done": {"counter": "visits.b", "at_least": "n"}},
        "states": {
            "a": {"handler": first, "next": "b"},
            "b": {"handler": "step", "on": {"next": [{"to": "end", "if": "done"}, {"to": "a"}]}},
            "end": {"final": True},
        },
    }
    registry = Registry()
    registry.add_handler("step", step)
    registry.add_handler("park", wait_forever)
    return validate(converter.structure(raw, Workflow), registry)


async def engine_run(compiled: Any) -> float:
    engine = Engine(store=MemoryRunStore())
    began = time.perf_counter()
    async for _ in engine.start(compiled):
        pass
    return (time.perf_counter() - began) / TRANSITIONS * 1e6


async def baseline_run() -> float:
    """The same walk as a dict of handlers: the floor any engine is compared with."""
    table = {"a": {"next": "b"}, "b": {"next": "a"}}
    handlers = {"a": step, "b": step}
    visits_b = 0
    state = "a"
    began = time.perf_counter()
    while True:
        outcome = await handlers[state](None)
        if state == "b":
            visits_b += 1
            if visits_b >= TRANSITIONS // 2:
                break
        state = table[state][outcome]
    return (time.perf_counter() - began) / TRANSITIONS * 1e6


async def start_cost(live: int) -> tuple[float, float]:
    """µs to start one more run, and bytes per live (parked) run, with `live` runs parked."""
    compiled = workflow("exit", first="park")
    engine = Engine(store=MemoryRunStore())
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    parked = []
    for _ in range(live):
        run = engine.start(compiled)
        iterator = aiter(run)
        for _ in range(3):  # RunStarted, StateEntered, the handler's first event
            await anext(iterator)
        parked.append(iterator)
    per_run = (tracemalloc.get_traced_memory()[0] - before) / max(live, 1)
    tracemalloc.stop()
    samples = []
    for _ in range(200):
        began = time.perf_counter()
        run = engine.start(compiled)
        iterator = aiter(run)
        await anext(iterator)
        samples.append((time.perf_counter() - began) * 1e6)
        await iterator.aclose()  # type: ignore[attr-defined]
    for iterator in parked:
        await iterator.aclose()  # type: ignore[attr-defined]
    return statistics.median(samples), per_run


async def main() -> None:
    compiled = {mode: workflow(mode) for mode in ("sync", "async", "exit")}
    results: dict[str, list[float]] = {"baseline": [], "sync": [], "async": [], "exit": []}
    for _ in range(7):  # interleaved rounds
        results["baseline"].append(await baseline_run())
        for mode, c in compiled.items():
            results[mode].append(await engine_run(c))
    base = statistics.median(results["baseline"])
    print(f"per transition (median of 7 rounds, {TRANSITIONS} transitions each):")
    print(f"  hand-written dict loop       {base:8.2f} µs")
    for mode in ("sync", "async", "exit"):
        med = statistics.median(results[mode])
        print(f"  engine, durability={mode:<5}    {med:8.2f} µs   ({med / base:5.1f}x baseline)")
    for live in (10, 10_000):
        start, mem = await start_cost(live)
        print(f"  start a run with {live:>6} live: {start:7.1f} µs; {mem / 1024:5.2f} KiB/live run")


if __name__ == "__main__":
    asyncio.run(main())
