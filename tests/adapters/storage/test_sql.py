"""What `SqlStore` promises beyond the port contracts: URLs, schema, isolation, query counts."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from loopwright.adapters.storage import _agent_sql as q
from loopwright.adapters.storage._db import Mode
from loopwright.adapters.storage._sqlite import SqliteRunner, lite_sql
from loopwright.adapters.storage.sql import SqlStore, StoreUrlError, normalize_url, open_store
from loopwright.adapters.storage.tables import SchemaVersionError
from loopwright.schemas import Agent, Message
from tests.pg import postgres_schema

ANN = Agent(id="agent-1", name="ann")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL of an empty database: a SQLite file or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    async with postgres_schema() as pg:
        yield pg


@contextmanager
def counting_statements() -> Iterator[list[str]]:
    """Every SQL statement any engine sends while the block runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def tracing_sqlite(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement sent on the bare sqlite3 connections of SQLite stores opened later."""
    seen: list[str] = []
    connect = SqliteRunner._connect

    def tracing(self: SqliteRunner) -> sqlite3.Connection:
        conn = connect(self)
        conn.set_trace_callback(seen.append)
        return conn

    monkeypatch.setattr(SqliteRunner, "_connect", tracing)
    return seen


@pytest.mark.parametrize(
    ("given", "driver", "schema"),
    [
        ("sqlite:///a.db", "sqlite+pysqlite", None),
        ("sqlite+pysqlite:///a.db", "sqlite+pysqlite", None),
        ("sqlite+aiosqlite:///a.db", "sqlite+pysqlite", None),
        ("postgresql://u@h/db", "postgresql+asyncpg", None),
        ("postgres://u@h/db", "postgresql+asyncpg", None),
        ("postgresql+psycopg2://u@h/db?schema=s1", "postgresql+asyncpg", "s1"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg", None),
    ],
)
def test_urls_get_the_driver_the_store_runs_on(given: str, driver: str, schema: str | None) -> None:
    url, found = normalize_url(given)
    assert (url.drivername, found) == (driver, schema)
    assert "schema" not in url.query


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite:///a.db?schema=x", "PostgreSQL only"),
        ("mysql://u@h/db", "not supported"),
        ("not a url", "not a database URL"),
        ("postgresql://h/db?schema=a&schema=b", "more than once"),
    ],
)
def test_unusable_urls_say_why(given: str, why: str) -> None:
    with pytest.raises(StoreUrlError, match=why):
        normalize_url(given)


async def test_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with SqlStore(f"sqlite:///{path}") as store:
        await store.create_agent(ANN)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


async def test_open_is_idempotent_and_concurrent(url: str) -> None:
    async with AsyncExitStack() as stack:
        stores = [SqlStore(url) for _ in range(3)]
        for store in stores:
            stack.push_async_callback(store.aclose)
        await asyncio.gather(*(store.open() for store in stores))
        await stores[0].create_agent(ANN)
        await stores[1].open()
        assert await stores[2].get_agent("ann") == ANN


async def test_a_newer_schema_is_refused(url: str) -> None:
    newer = "UPDATE alembic_version SET version_num = 'from-the-future'"
    async with SqlStore(url) as store:
        await store._db.run(lambda conn: conn.exec_driver_sql(newer), Mode.WRITE)
    with pytest.raises(SchemaVersionError, match="upgrade loopwright"):
        await open_store(url)


async def test_two_stores_on_one_database_lose_nothing(url: str) -> None:
    # Two engines stand for two worker processes: only the database serialises them.
    async with SqlStore(url) as one, SqlStore(url) as two:
        await one.create_agent(ANN)
        steps = [
            [Message(id=f"m{n}a", role="user"), Message(id=f"m{n}b", role="assistant")]
            for n in range(20)
        ]
        stores = [one, two] * 10
        await asyncio.gather(
            *(s.append_messages("agent-1", m) for s, m in zip(stores, steps, strict=True))
        )
        context = await two.load_context("agent-1")
        log = await one.list_messages("agent-1")
    assert len(context.messages) == 40
    assert context.agent.version == 20
    assert context.messages == tuple(log)


async def test_load_context_queries_do_not_grow_with_the_log(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_sqlite3 = tracing_sqlite(monkeypatch)  # SQLite's hot path goes around SQLAlchemy
    async with SqlStore(url) as store:
        await store.create_agent(ANN)
        counts = []
        for size in (10, 300):
            batch = [Message(id=f"m{size}-{n}", role="user") for n in range(size)]
            agent = await store.append_messages("agent-1", batch)
            await store.set_context("agent-1", [batch[-1].id], expected_version=agent.version)
            on_sqlite3.clear()
            with counting_statements() as seen:
                context = await store.load_context("agent-1")
            assert [m.id for m in context.messages] == [batch[-1].id]
            counts.append(len(seen) + len(on_sqlite3))
    assert 3 <= counts[0] == counts[1] <= 7  # three queries, plus BEGIN/ROLLBACK where emitted


async def test_a_cancelled_append_is_all_or_nothing(url: str) -> None:
    async with SqlStore(url) as store:
        await store.create_agent(ANN)
        for delay in range(12):
            step = [Message(id=f"c{delay}a", role="user"), Message(id=f"c{delay}b", role="user")]
            task = asyncio.create_task(store.append_messages("agent-1", step))
            for _ in range(delay):
                await asyncio.sleep(0)
            task.cancel()  # lands before, during or (in a thread) after the call
            await asyncio.gather(task, return_exceptions=True)
        context = await store.load_context("agent-1")
        log = [m.id for m in await store.list_messages("agent-1")]
    assert [m.id for m in context.messages] == log
    assert len(log) % 2 == 0
    assert context.total_messages == len(log)
    assert context.agent.version == len(log) // 2


async def test_nul_is_kept_on_sqlite_and_replaced_on_postgresql(url: str) -> None:
    async with SqlStore(url) as store:
        await store.create_agent(ANN)
        await store.append_messages("agent-1", [Message(id="m", role="tool", content="a\x00b")])
        [stored] = await store.list_messages("agent-1")
        expected = "a\ufffdb" if store.dialect == "postgresql" else "a\x00b"
    assert stored.content == expected


async def test_open_store_closes_the_engine_when_it_cannot_open() -> None:
    # Nothing listens on port 1: the connection is refused, and no connection may leak.
    with pytest.raises(ConnectionRefusedError):
        await open_store("postgresql://postgres@127.0.0.1:1/test")


async def test_a_cancelled_caller_does_not_lose_its_write(url: str) -> None:
    async with SqlStore(url) as store:
        await store.create_agent(ANN)
        task = asyncio.create_task(store.append_messages("agent-1", [Message(id="m", role="user")]))
        await asyncio.sleep(0)  # the call has started
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        context = await store.load_context("agent-1")
    assert [m.id for m in context.messages] == ["m"]


async def test_waiting_for_a_sqlite_lock_does_not_block_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with SqlStore(f"sqlite:///{path}") as store:
        await store.create_agent(ANN)
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            write = asyncio.create_task(store.append_messages("agent-1", [_user("m")]))
            gaps = await _tick_gaps(0.3)
            assert not write.done()
        finally:
            other.execute("COMMIT")
            other.close()
        await write
    assert max(gaps) < 0.1


def _user(message_id: str) -> Message:
    return Message(id=message_id, role="user", content="hi")


async def _tick_gaps(seconds: float) -> list[float]:
    """Gaps between 10 ms ticks of the event loop over `seconds`."""
    loop = asyncio.get_running_loop()
    gaps, last, end = [], loop.time(), loop.time() + seconds
    while loop.time() < end:
        await asyncio.sleep(0.01)
        now = loop.time()
        gaps.append(now - last)
        last = now
    return gaps


async def test_lookups_by_name_id_and_run_never_walk_a_table_on_sqlite(tmp_path: Path) -> None:
    statements = {
        "get_agent": q.by_key(False, tenant=False),
        "get_agent in a tenant": q.by_key(False, tenant=True),
        "find_messages": q.find_query(False),
        "discard_messages: positions": q.positions_query(False),
        "discard_messages: tail size": q.tail_size,
        "discard_messages: drop": q.drop_tail,
    }
    params = {
        "b_key": "k",
        "b_tenant": "t",
        "b_ids": '["m"]',
        "b_run": "r",
        "b_id": "a",
        "b_pos": 1,
    }

    def plan(conn: sqlite3.Connection, statement: Any) -> list[str]:
        sql = lite_sql(statement)
        explained = conn.execute("EXPLAIN QUERY PLAN " + sql.text, sql.params(params))
        return [row[3] for row in explained]

    def walks(conn: sqlite3.Connection) -> dict[str, list[str]]:
        plans = {name: plan(conn, statement) for name, statement in statements.items()}
        # "SCAN" of a table (not of the JSON list of ids) reads every row.
        return {
            n: p
            for n, p in plans.items()
            if any(s.startswith("SCAN messages") or s.startswith("SCAN agents") for s in p)
        }

    async with SqlStore(f"sqlite:///{tmp_path / 'store.db'}") as store:
        assert await store._db.run_lite(walks, Mode.READ) == {}
