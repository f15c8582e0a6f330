"""Store cost: µs per `append_messages` (one step, 2 messages), per `save`, and `load_context`
with 10 vs 10,000 stored messages (it must stay flat), on SQLite and PostgreSQL.

Run: `python benchmarks/bench_store.py [--pg postgresql://postgres@127.0.0.1/test] [-n 500]`.
SQLite uses a temporary file (WAL, synchronous=NORMAL); PostgreSQL a temporary schema.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import attrs

from loopwright.adapters.storage.sql import SqlStore, open_store
from loopwright.schemas import Agent, Message, RunRecord


async def _timed(n: int, call: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
    """Median and mean µs of `n` sequential calls."""
    samples = []
    for i in range(n):
        start = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples), statistics.fmean(samples)


async def _fill(store: SqlStore, agent_id: str, count: int) -> None:
    for start in range(0, count, 500):
        batch = [
            Message(id=f"{agent_id}-f{i}", role="user", content="x" * 80)
            for i in range(start, min(start + 500, count))
        ]
        await store.append_messages(agent_id, batch)


async def _context_agent(store: SqlStore, stored: int) -> str:
    """An agent with `stored` messages, the last 10 of them in context."""
    agent = await store.create_agent(Agent(id=f"ctx-{stored}", name=f"ctx-{stored}"))
    await _fill(store, agent.id, stored - 10)
    tail = [Message(id=f"{agent.id}-t{i}", role="user", content="y" * 80) for i in range(10)]
    agent = await store.append_messages(agent.id, tail)
    await store.set_context(agent.id, [m.id for m in tail], expected_version=agent.version)
    return agent.id


async def _load_contexts(store: SqlStore, sizes: list[int], n: int) -> list[tuple[float, float]]:
    """`load_context` timings per log size, measured in alternation so that noise hits all."""
    agents = [await _context_agent(store, size) for size in sizes]
    samples: list[list[float]] = [[] for _ in sizes]
    for _ in range(n):
        for agent_id, found in zip(agents, samples, strict=True):
            start = time.perf_counter()
            await store.load_context(agent_id)
            found.append((time.perf_counter() - start) * 1e6)
    return [(statistics.median(s), statistics.fmean(s)) for s in samples]


async def bench(url: str, n: int) -> dict[str, tuple[float, float]]:
    """The measurements on one database."""
    store = await open_store(url)
    try:
        await store.create_agent(Agent(id="a", name="a"))

        def step(i: int) -> Awaitable[object]:
            pair = [
                Message(id=f"u{i}", role="user", content="hello " * 10),
                Message(id=f"r{i}", role="assistant", content="world " * 30),
            ]
            return store.append_messages("a", pair)

        record = RunRecord(id="run", workflow="wf", state="s", data={"k": list(range(20))})
        await store.create(record)
        results = {
            "append_messages (2 msgs)": await _timed(n, step),
            "save": await _timed(n, lambda i: store.save(attrs.evolve(record, seq=i + 1))),
        }
        sizes = [10, 10_000]
        for size, timing in zip(sizes, await _load_contexts(store, sizes, n), strict=True):
            results[f"load_context, {size:,} stored"] = timing
        return results
    finally:
        await store.aclose()


async def _pg(dsn: str, n: int) -> dict[str, tuple[float, float]]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        return await bench(f"{dsn}?schema={schema}", n)
    finally:
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("-n", type=int, default=500, help="calls per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"sqlite": await bench(f"sqlite:///{Path(tmp) / 'bench.db'}", args.n)}
    runs["postgresql"] = await _pg(args.pg, args.n)
    print(f"{'operation':<32} {'backend':<11} {'median µs':>10} {'mean µs':>10}")
    for backend, results in runs.items():
        for name, (median, mean) in results.items():
            print(f"{name:<32} {backend:<11} {median:>10.0f} {mean:>10.0f}")


if __name__ == "__main__":
    asyncio.run(main())
