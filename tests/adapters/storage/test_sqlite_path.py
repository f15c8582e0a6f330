"""SQLite's hot path (the calls of every turn on bare sqlite3, around SQLAlchemy) and how a
store call outlives its cancelled caller without blocking the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from loopwright.adapters.storage.sql import SqlStore
from loopwright.engine.errors import RunNotFoundError, StaleWriteError
from loopwright.schemas import Agent, Block, Message, RunRecord

from .test_sql import counting_statements, tracing_sqlite

ANN = Agent(id="agent-1", name="ann")
RECORD = RunRecord(id="run-1", workflow="wf", state="s", data={"k": [1, 2]})


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement sent on the bare sqlite3 connections of stores opened later."""
    return tracing_sqlite(monkeypatch)


async def test_the_calls_of_a_turn_go_around_sqlalchemy(tmp_path: Path, traced: list[str]) -> None:
    async with SqlStore(f"sqlite:///{tmp_path / 'store.db'}") as store:
        await store.create_agent(ANN, [Block(label="human", value="x", read_only=True)])
        with counting_statements() as through_sqlalchemy:
            await store.create(RECORD)
            await store.save(attrs.evolve(RECORD, seq=1))
            message = Message(id="m", role="assistant", content="hi", incomplete=True)
            await store.append_messages("agent-1", [message])
            assert await store.get_agent("ann") == attrs.evolve(ANN, version=ANN.version + 1)
            context = await store.load_context("agent-1")
        log = await store.list_messages("agent-1")  # read back through SQLAlchemy
    assert through_sqlalchemy == []
    verbs = [" ".join(s.split()[:3]) for s in traced if not s.startswith("PRAGMA")]
    assert "INSERT INTO runs" in verbs
    assert "UPDATE runs SET" in verbs
    assert "INSERT INTO messages" in verbs
    assert "UPDATE agents SET" in verbs
    assert context.messages == tuple(log) == (message,)
    # sqlite3 reads BOOLEAN columns as 0/1: both paths must give bools
    assert context.messages[0].incomplete is True
    assert log[0].incomplete is True
    assert context.blocks[0].read_only is True


async def test_stale_and_missing_saves_are_told_apart_on_the_hot_path(tmp_path: Path) -> None:
    async with SqlStore(f"sqlite:///{tmp_path / 'store.db'}") as store:
        with pytest.raises(RunNotFoundError):
            await store.save(RECORD)
        await store.create(attrs.evolve(RECORD, seq=5))
        with pytest.raises(StaleWriteError, match="the store holds epoch 0 seq 5"):
            await store.save(attrs.evolve(RECORD, seq=4))


@contextmanager
def write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Another process's write transaction on the file (commit it to let writers through)."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        if other.in_transaction:
            other.execute("COMMIT")
        other.close()


Call = Callable[[SqlStore], Coroutine[Any, Any, object]]
CALLS: dict[str, Call] = {
    "hot": lambda store: store.save(attrs.evolve(RECORD, seq=1)),  # bare sqlite3
    "sqlalchemy": lambda store: store.put_block("agent-1", Block(label="b", value="v")),
}


async def _landed(store: SqlStore, kind: str) -> bool:
    if kind == "hot":
        loaded = await store.load(RECORD.id)
        return loaded is not None and loaded.seq == 1
    return [b.label for b in (await store.load_context("agent-1")).blocks] == ["b"]


@pytest.mark.parametrize("kind", CALLS)
async def test_a_call_cancelled_in_the_queue_still_runs_then_raises(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "store.db"
    async with SqlStore(f"sqlite:///{path}") as store:
        await store.create_agent(ANN)
        await store.create(RECORD)
        with write_lock(path):
            # The first write holds the writer thread (SQLite's busy wait), the second queues.
            first = asyncio.create_task(
                store.append_messages("agent-1", [Message(id="m", role="user")])
            )
            queued = asyncio.create_task(CALLS[kind](store))
            await asyncio.sleep(0.05)
            queued.cancel()
            await asyncio.sleep(0.1)
            assert not queued.done()  # it waits for its write instead of abandoning it
        with pytest.raises(asyncio.CancelledError):
            await queued
        await first
        assert await _landed(store, kind)


@pytest.mark.parametrize("kind", CALLS)
async def test_a_timeout_lands_after_the_write(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "store.db"
    async with SqlStore(f"sqlite:///{path}") as store:
        await store.create_agent(ANN)
        await store.create(RECORD)
        loop = asyncio.get_running_loop()
        with write_lock(path) as other:
            loop.call_later(0.2, other.execute, "COMMIT")
            start = loop.time()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.02):
                    await CALLS[kind](store)
            waited = loop.time() - start
        assert waited >= 0.15  # the caller got its TimeoutError once the write was done
        assert await _landed(store, kind)


async def test_sqlite_never_imports_the_postgresql_side(tmp_path: Path) -> None:
    # ~0.3 s of start-up for every `loopwright chat` on SQLite otherwise (a database that is
    # up to date: creating one runs Alembic, which imports every dialect).
    url = f"sqlite:///{tmp_path / 'store.db'}"
    async with SqlStore(url) as store:
        await store.create_agent(ANN)
    script = f"""
import asyncio, sys
from loopwright.adapters.storage.sql import open_store

async def main():
    store = await open_store({url!r})
    await store.append_messages("agent-1", [])
    await store.load_context("agent-1")
    await store.aclose()

asyncio.run(main())
pg_side = ("sqlalchemy.ext.asyncio", "sqlalchemy.dialects.postgresql", "asyncpg")
loaded = [m for m in sys.modules if m.startswith(pg_side)]
assert not loaded, loaded
"""
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    assert await asyncio.wait_for(child.wait(), 60) == 0
