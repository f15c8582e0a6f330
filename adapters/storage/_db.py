"""The engine behind `SqlStore`: dialect set-up and running one store call's statements.

A store call is a plain function of a SQLAlchemy Core `Connection` (its *body*); `Database.run`
runs it off the event loop in one of four modes:
- `WRITE`: several writes, atomic (SQLite `BEGIN IMMEDIATE`, so a transaction never has to
  upgrade a read lock; PostgreSQL READ COMMITTED with row locks taken by the body);
- `STATEMENT`: one write statement (PostgreSQL autocommit: one round trip instead of three);
- `READ`: one read statement; `SNAPSHOT`: several reads that must agree (PostgreSQL REPEATABLE
  READ, read-only; SQLite a deferred transaction, which reads one WAL snapshot).

PostgreSQL runs the body through the async engine (`AsyncConnection.run_sync`, asyncpg, no
thread). SQLite runs the whole body in one worker thread on the sync sqlite3 driver: measured
here, aiosqlite hops to its thread for every cursor call (~30 hops for `load_context`), which cost
~4x the time of running the body in a single hop. Writes have one thread (they serialise in
SQLite anyway, and queueing in-process beats sleeping in SQLite's busy handler); reads have a few.

A call runs to its end even if its caller is cancelled (the caller then gets CancelledError):
a cancel inside a round trip would leave the connection mid-protocol and the write in doubt.
"""

from __future__ import annotations

import asyncio
import enum
import sqlite3
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeAlias, TypeVar

from sqlalchemy import URL, Connection, Engine, Row, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

T = TypeVar("T")
AnyRow: TypeAlias = Row[*tuple[Any, ...]]
"""A result row of any shape."""
Body = Callable[[Connection], T]

_BUSY_TIMEOUT_S = 10.0  # other connections writing the same file: wait, don't fail
_SQLITE_PRAGMAS = (
    f"busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}",
    "foreign_keys=ON",
    # WAL + NORMAL survives a crash of the process, fsyncs at checkpoints instead of per commit.
    "synchronous=NORMAL",
)
_IMMEDIATE = "loopwright_immediate"
_READ_THREADS = 4


class Mode(enum.Enum):
    """How a body runs (see the module docstring)."""

    WRITE = "write"
    STATEMENT = "statement"
    READ = "read"
    SNAPSHOT = "snapshot"


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the driver so that `_sqlite_begin` decides the mode.
    dbapi_connection.isolation_level = None
    for pragma in _SQLITE_PRAGMAS:
        dbapi_connection.execute(f"PRAGMA {pragma}")
    _use_wal(dbapi_connection)


def _use_wal(dbapi_connection: Any) -> None:
    """Switch the file to WAL (it stays so); runs in a worker thread, so it may sleep.

    The switch needs the file to itself and SQLite does not wait for that (no busy handler),
    so connections racing on a new file retry until the first one has switched it."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            mode = dbapi_connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)
            continue
        if mode != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL on this file (journal mode {mode})")
        return


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


async def _finish(started: Awaitable[T]) -> T:
    """Await `started` to its end even if cancelled meanwhile; then raise CancelledError."""
    future = asyncio.ensure_future(started)
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait((future,))
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not future.cancelled():
            future.exception()  # retrieved: the caller asked to be cancelled, not told
        raise asyncio.CancelledError
    return future.result()


class Database:
    """The engine of one store; `pg` tells the dialect, `insert` is its upsert-capable insert."""

    def __init__(self, url: URL, *, schema: str | None = None) -> None:
        self.pg = url.get_backend_name() == "postgresql"
        self.insert = postgresql.insert if self.pg else sqlite.insert
        if self.pg:
            self._async = _PgRunner(url, schema)
        else:
            self._sync = _SqliteRunner(url)

    async def run(self, body: Body[T], mode: Mode) -> T:
        """Run `body` on a connection in `mode`; its result, or its exception."""
        if self.pg:
            return await _finish(self._async.run(body, mode))
        return await _finish(self._sync.run(body, mode))

    async def dispose(self) -> None:
        """Close every pooled connection (and, for SQLite, the worker threads)."""
        if self.pg:
            await self._async.engine.dispose()
        else:
            await asyncio.to_thread(self._sync.close)


class _PgRunner:
    def __init__(self, url: URL, schema: str | None) -> None:
        connect_args: dict[str, Any] = {}
        if schema is not None:
            connect_args["server_settings"] = {"search_path": schema}
        self.engine: AsyncEngine = create_async_engine(url, connect_args=connect_args)
        self._auto = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._snapshot = self.engine.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )

    async def run(self, body: Body[T], mode: Mode) -> T:
        if mode is Mode.WRITE:
            async with self.engine.begin() as conn:
                return await conn.run_sync(body)
        engine = self._snapshot if mode is Mode.SNAPSHOT else self._auto
        async with engine.connect() as conn:
            return await conn.run_sync(body)


class _SqliteRunner:
    def __init__(self, url: URL) -> None:
        self.engine: Engine = create_engine(url)
        event.listen(self.engine, "connect", _sqlite_connect)
        event.listen(self.engine, "begin", _sqlite_begin)
        self._immediate = self.engine.execution_options(**{_IMMEDIATE: True})
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="loopwright-sqlite-write")
        self._readers = ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="loopwright-sqlite")

    def run(self, body: Body[T], mode: Mode) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        if mode in (Mode.WRITE, Mode.STATEMENT):
            return loop.run_in_executor(self._writer, self._write, body)
        return loop.run_in_executor(self._readers, self._read, body)

    def _write(self, body: Body[T]) -> T:
        with self._immediate.begin() as conn:
            return body(conn)

    def _read(self, body: Body[T]) -> T:
        with self.engine.connect() as conn:
            return body(conn)

    def close(self) -> None:
        self._writer.shutdown()
        self._readers.shutdown()
        self.engine.dispose()
