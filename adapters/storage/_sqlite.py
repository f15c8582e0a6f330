"""SQLite's side of `Database`: worker threads on the sync sqlite3 driver, and the hot path.

Measured here, aiosqlite hops to its thread for every cursor call (~30 hops for `load_context`),
which cost ~4x the time of running the whole body in a single hop; so a body runs in one
worker thread. Writes have one thread (they serialise in SQLite anyway, and queueing
in-process beats sleeping in SQLite's busy handler); reads have a few.

Two kinds of body run there. A SQLAlchemy body (`run`) gets a pooled Core `Connection`.
A *lite* body (`run_lite`: the calls of every turn) gets the thread's own sqlite3 connection
and runs SQL compiled once from the Core statements (`LiteSql`): executing one statement
through SQLAlchemy costs ~100 µs here, the statement itself 15-30 µs.

The hop itself is an executor job that settles a plain loop future (`run_in_executor` chains
two futures both ways, and guarding it with `ensure_future` + `asyncio.wait` doubled the
cost of a call). When the caller is cancelled, only then does it wait for the job to end.

A schema change (`Mode.SCHEMA`) runs with foreign keys off, as SQLite's ALTER TABLE procedure
asks: a migration that rebuilds a table (Alembic's batch mode: copy, drop, rename) would
otherwise cascade the drop to every row that refers to it. The pragma is a no-op inside a
transaction, so it is set before BEGIN; `foreign_key_check` runs before the commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future as JobFuture
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar, cast

from attrs import frozen
from sqlalchemy import URL, Connection, Engine, create_engine, event
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from ._db import Body, LiteBody, Mode, outlast

T = TypeVar("T")

_BUSY_TIMEOUT_S = 10.0  # other connections writing the same file: wait, don't fail
_SQLITE_PRAGMAS = (
    f"busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}",
    "foreign_keys=ON",
    # WAL + NORMAL survives a crash of the process, fsyncs at checkpoints instead of per commit.
    "synchronous=NORMAL",
)
_IMMEDIATE = "loopwright_immediate"
_READ_THREADS = 4
_WRITES = (Mode.WRITE, Mode.STATEMENT)
_DIALECT = sqlite.dialect(paramstyle="named")  # sqlite3 binds `:name` from a dict itself


@frozen
class LiteSql:
    """One Core statement compiled for sqlite3: its text and the values of its own literals.

    `fixed` holds what the statement binds itself (`LIMIT 1`, `version + 1`); a call adds
    its parameters by name (`params`)."""

    text: str
    fixed: Mapping[str, Any]

    def params(self, given: Mapping[str, Any]) -> Mapping[str, Any]:
        """The parameters of one execution."""
        return {**self.fixed, **given} if self.fixed else given


def lite_sql(statement: ClauseElement, column_keys: list[str] | None = None) -> LiteSql:
    """`statement` compiled for the SQLite hot path (`column_keys`: the columns an INSERT
    names, each bound by its column name)."""
    compiled = cast(SQLCompiler, statement.compile(dialect=_DIALECT, column_keys=column_keys))
    fixed = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
    return LiteSql(text=compiled.string, fixed=fixed)


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


def _schema_version(conn: Connection) -> Any:
    return conn.exec_driver_sql("PRAGMA schema_version").scalar()


def _check_foreign_keys(conn: Connection) -> None:
    """Raise if a row refers to a missing one (run before committing a schema change)."""
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise sqlite3.IntegrityError(
            f"a schema change left rows with dangling foreign keys: {broken[:5]}; fix the "
            "migration (nothing was committed)"
        )


def _settle(future: asyncio.Future[T], ok: bool, outcome: Any) -> None:
    if future.cancelled():  # the caller was cancelled and waits for the job instead
        return
    if ok:
        future.set_result(outcome)
    else:
        future.set_exception(outcome)


def _job(loop: asyncio.AbstractEventLoop, future: asyncio.Future[T], call: Callable[[], T]) -> None:
    """Run `call` in a worker thread and hand its outcome to `future` on the loop."""
    try:
        result = call()
    except BaseException as exc:  # any outcome is the caller's
        loop.call_soon_threadsafe(_settle, future, False, exc)
    else:
        loop.call_soon_threadsafe(_settle, future, True, result)


async def _hop(pool: ThreadPoolExecutor, call: Callable[[], T]) -> T:
    """`call()` in a thread of `pool`; it runs to its end even if the caller is cancelled."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    job: JobFuture[None] = pool.submit(_job, loop, future, call)
    try:
        return await future
    except asyncio.CancelledError:
        if future.cancelled():  # the cancel reached the future: the job may still run
            await outlast(asyncio.wrap_future(job))
        else:  # the job had finished: its outcome is dropped, the caller asked to be cancelled
            future.exception()
        raise


class SqliteRunner:
    """The worker threads of one SQLite store, a SQLAlchemy engine and the lite connections."""

    def __init__(self, url: URL) -> None:
        self.engine: Engine = create_engine(url)
        event.listen(self.engine, "connect", _sqlite_connect)
        event.listen(self.engine, "begin", _sqlite_begin)
        self._immediate = self.engine.execution_options(**{_IMMEDIATE: True})
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="loopwright-sqlite-write")
        self._readers = ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="loopwright-sqlite")
        self._local = threading.local()
        self._lock = threading.Lock()
        self.connections: list[sqlite3.Connection] = []
        """Every lite connection opened so far (one per worker thread that ran a lite body)."""

    def _pool(self, mode: Mode) -> ThreadPoolExecutor:
        return self._writer if mode in _WRITES else self._readers

    async def run(self, body: Body[T], mode: Mode) -> T:
        if mode is Mode.SCHEMA:
            return await _hop(self._writer, partial(self._change_schema, body))
        if mode in _WRITES:
            return await _hop(self._writer, partial(self._write, body))
        return await _hop(self._readers, partial(self._read, body))

    async def run_lite(self, body: LiteBody[T], mode: Mode) -> T:
        return await _hop(self._pool(mode), partial(self._lite, body, mode))

    def _write(self, body: Body[T]) -> T:
        with self._immediate.begin() as conn:
            return body(conn)

    def _change_schema(self, body: Body[T]) -> T:
        with self._immediate.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None  # a pooled connection that is checked out
            raw.execute("PRAGMA foreign_keys=OFF")  # before SQLAlchemy's BEGIN
            try:
                with conn.begin():
                    before = _schema_version(conn)
                    result = body(conn)
                    if _schema_version(conn) != before:  # opening an up-to-date file: no scan
                        _check_foreign_keys(conn)
            finally:
                raw.execute("PRAGMA foreign_keys=ON")
        return result

    def _read(self, body: Body[T]) -> T:
        with self.engine.connect() as conn:
            return body(conn)

    def _lite(self, body: LiteBody[T], mode: Mode) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        if mode is Mode.WRITE:
            conn.execute("BEGIN IMMEDIATE")
        elif mode is Mode.SNAPSHOT:
            conn.execute("BEGIN")
        else:  # one statement: autocommit, no BEGIN/COMMIT round
            return body(conn)
        try:
            result = body(conn)
            conn.commit()
        finally:
            if conn.in_transaction:  # the body or the commit failed
                conn.rollback()
        return result

    def _connect(self) -> sqlite3.Connection:
        dialect = self.engine.dialect
        args, kwargs = dialect.create_connect_args(self.engine.url)
        # Closed by `close` from another thread once the workers have stopped.
        kwargs["check_same_thread"] = False
        conn: sqlite3.Connection = dialect.loaded_dbapi.connect(*args, **kwargs)
        _sqlite_connect(conn, None)
        with self._lock:
            self.connections.append(conn)
        return conn

    def close(self) -> None:
        self._writer.shutdown()
        self._readers.shutdown()
        with self._lock:
            for conn in self.connections:
                conn.close()
            self.connections.clear()
        self.engine.dispose()
