"""The engine behind `SqlStore`: dialect set-up and running one store call's statements.

A store call is a plain function of a SQLAlchemy Core `Connection` (its *body*); `Database.run`
runs it off the event loop in one of five modes:
- `WRITE`: several writes, atomic (SQLite `BEGIN IMMEDIATE`, so a transaction never has to
  upgrade a read lock; PostgreSQL READ COMMITTED with row locks taken by the body);
- `STATEMENT`: one write statement (PostgreSQL autocommit: one round trip instead of three);
- `READ`: one read statement; `SNAPSHOT`: several reads that must agree (PostgreSQL REPEATABLE
  READ, read-only; SQLite a deferred transaction, which reads one WAL snapshot);
- `SCHEMA`: creating or migrating the schema: a `WRITE`, with SQLite's foreign keys off (see
  `_sqlite.py`).

PostgreSQL runs the body through the async engine (`AsyncConnection.run_sync`, asyncpg, no
thread). SQLite runs the whole body in one worker thread on the sync sqlite3 driver (see
`_sqlite.py`); the hot calls there skip SQLAlchemy altogether (`Database.run_lite`).

A call runs to its end even if its caller is cancelled (the caller then gets CancelledError):
a cancel inside a round trip would leave the connection mid-protocol and the write in doubt.

Each backend's SQLAlchemy modules are imported when a store first uses that backend: the
asyncio extension and the PostgreSQL dialect cost ~0.3 s of start-up that SQLite never needs.
"""

from __future__ import annotations

import asyncio
import enum
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from sqlalchemy import URL, Connection, Row

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ._sqlite import SqliteRunner

T = TypeVar("T")
AnyRow: TypeAlias = Row[*tuple[Any, ...]]
"""A result row of any shape."""
Body = Callable[[Connection], T]
LiteBody = Callable[[sqlite3.Connection], T]
"""A body on the bare sqlite3 connection (SQLite's hot calls; see `Database.run_lite`)."""


class Mode(enum.Enum):
    """How a body runs (see the module docstring)."""

    WRITE = "write"
    STATEMENT = "statement"
    READ = "read"
    SNAPSHOT = "snapshot"
    SCHEMA = "schema"


async def outlast(future: asyncio.Future[Any]) -> bool:
    """Wait until `future` is done, whatever cancels the waiter; True if one did.

    `asyncio.wait` never cancels what it waits for, so the work goes on to its end."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait((future,))
        except asyncio.CancelledError:
            cancelled = True
    return cancelled


async def _finish(started: Awaitable[T]) -> T:
    """Await `started` to its end even if cancelled meanwhile; then raise CancelledError."""
    future = asyncio.ensure_future(started)
    if await outlast(future):
        if not future.cancelled():
            future.exception()  # retrieved: the caller asked to be cancelled, not told
        raise asyncio.CancelledError
    return future.result()


class Database:
    """The engine of one store; `pg` tells the dialect, `insert` is its upsert-capable insert."""

    def __init__(self, url: URL, *, schema: str | None = None) -> None:
        self.pg = url.get_backend_name() == "postgresql"
        self._pg: _PgRunner | None = None
        self._sync: SqliteRunner | None = None
        self.insert: Callable[[Table], postgresql.Insert | sqlite.Insert]
        if self.pg:
            from sqlalchemy.dialects import postgresql

            self.insert = postgresql.insert
            self._pg = _PgRunner(url, schema)
        else:
            from sqlalchemy.dialects import sqlite

            from ._sqlite import SqliteRunner

            self.insert = sqlite.insert
            self._sync = SqliteRunner(url)

    async def run(self, body: Body[T], mode: Mode) -> T:
        """Run `body` on a connection in `mode`; its result, or its exception."""
        if self._sync is not None:
            return await self._sync.run(body, mode)
        assert self._pg is not None
        return await _finish(self._pg.run(body, mode))

    async def run_lite(self, body: LiteBody[T], mode: Mode) -> T:
        """Run `body` on a bare sqlite3 connection in `mode` (SQLite only)."""
        if self._sync is None:
            raise TypeError("run_lite is for SQLite databases; use run() on PostgreSQL")
        return await self._sync.run_lite(body, mode)

    async def dispose(self) -> None:
        """Close every pooled connection (and, for SQLite, the worker threads)."""
        if self._sync is not None:
            await asyncio.to_thread(self._sync.close)
        elif self._pg is not None:
            await self._pg.engine.dispose()


class _PgRunner:
    def __init__(self, url: URL, schema: str | None) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        connect_args: dict[str, Any] = {}
        if schema is not None:
            connect_args["server_settings"] = {"search_path": schema}
        self.engine: AsyncEngine = create_async_engine(url, connect_args=connect_args)
        self._auto = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._snapshot = self.engine.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )

    async def run(self, body: Body[T], mode: Mode) -> T:
        if mode in (Mode.WRITE, Mode.SCHEMA):
            async with self.engine.begin() as conn:
                return await conn.run_sync(body)
        engine = self._snapshot if mode is Mode.SNAPSHOT else self._auto
        async with engine.connect() as conn:
            return await conn.run_sync(body)
