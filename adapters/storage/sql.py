"""`SqlStore`: the `RunStore`, `AgentStore` and `AgentLeases` ports on SQLAlchemy 2 async Core.

A SQLite file (the default: WAL, a busy timeout, foreign keys on; each call runs in one worker
thread) or PostgreSQL through asyncpg, chosen by URL. Every write is idempotent by id; nothing
blocks the event loop.

    store = await open_store("sqlite:///loopwright.db")
    try:
        ...
    finally:
        await store.aclose()

A PostgreSQL URL may name a schema to use (created if missing) with `?schema=NAME`.
"""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from loopwright.engine.errors import LoopwrightError
from loopwright.engine.ports import Clock
from loopwright.engine.testing.memory import SystemClock

from ._db import Database, Mode
from ._sql_agents import SqlAgentStore
from ._sql_leases import SqlAgentLeases
from ._sql_runs import SqlRunStore
from .tables import SchemaVersionError, ensure_schema

__all__ = ["SchemaVersionError", "SqlStore", "StoreUrlError", "normalize_url", "open_store"]

# The driver each backend runs on, whatever driver the URL names (see _db.py for why SQLite's
# is the sqlite3 module in worker threads rather than aiosqlite).
_DRIVERS = {"sqlite": "sqlite+pysqlite", "postgresql": "postgresql+asyncpg"}


class StoreUrlError(LoopwrightError, ValueError):
    """A database URL this store cannot use."""

    def __init__(self, url: str, why: str) -> None:
        super().__init__(
            f"cannot use the database URL {url!r}: {why}; use `sqlite:///path/to/file.db` or "
            "`postgresql://user@host/db`"
        )
        self.url = url


def normalize_url(url: str | URL) -> tuple[URL, str | None]:
    """The URL the store connects with and the PostgreSQL schema `url` names (`?schema=`).

    Any SQLite URL (`sqlite://`, `sqlite+aiosqlite://`, ...) runs on the sqlite3 module, any
    PostgreSQL URL (`postgresql://`, `postgres://`, `postgresql+psycopg2://`, ...) on asyncpg.
    Raises: StoreUrlError (unknown backend, in-memory SQLite, a schema on SQLite)."""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=True)
    if isinstance(url, str) and url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise StoreUrlError(text, "it is not a database URL") from err
    backend = parsed.get_backend_name()
    if backend not in _DRIVERS:
        raise StoreUrlError(text, f"the {backend!r} backend is not supported")
    parsed = parsed.set(drivername=_DRIVERS[backend])
    schema = parsed.query.get("schema")
    if isinstance(schema, tuple):
        raise StoreUrlError(text, "`schema` is given more than once")
    if schema is not None:
        if backend != "postgresql":
            raise StoreUrlError(text, "`?schema=` is for PostgreSQL only")
        parsed = parsed.difference_update_query(["schema"])
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StoreUrlError(
            text,
            "an in-memory SQLite database is not shared between connections (use a file, "
            "or MemoryRunStore / MemoryAgentStore for a store in memory)",
        )
    return parsed, schema


class SqlStore(SqlRunStore, SqlAgentStore, SqlAgentLeases):
    """`RunStore`, `AgentStore` and `AgentLeases` on one SQL database; `open()` before use,
    `aclose()` after.

    Also an async context manager that opens and closes it.

    Args:
        url: `sqlite:///file.db` or `postgresql://user@host/db[?schema=NAME]`.
        clock: time source of memory-edit timestamps and lease expiry (tests pass a fixed
            clock).
    """

    def __init__(self, url: str | URL, *, clock: Clock | None = None) -> None:
        parsed, self._schema = normalize_url(url)
        self._db = Database(parsed, schema=self._schema)
        self._clock = clock or SystemClock()
        self._setup_agent_statements()

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return "postgresql" if self._db.pg else "sqlite"

    async def open(self) -> SqlStore:
        """Create the schema if it is missing (or upgrade it); returns the store.

        Raises: SchemaVersionError (the database is newer than this code)."""
        await self._db.run(lambda conn: ensure_schema(conn, pg_schema=self._schema), Mode.SCHEMA)
        return self

    async def aclose(self) -> None:
        """Dispose of the engine and its connections."""
        await self._db.dispose()

    async def __aenter__(self) -> SqlStore:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def open_store(url: str | URL, *, clock: Clock | None = None) -> SqlStore:
    """A `SqlStore` on `url` with its schema in place; `aclose()` it when done."""
    store = SqlStore(url, clock=clock)
    try:
        return await store.open()
    except BaseException:
        await store.aclose()
        raise
