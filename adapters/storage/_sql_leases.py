"""The `AgentLeases` part of `SqlStore`: one row per held lease in `agent_leases`.

Each call is one statement (PostgreSQL autocommit; SQLite on the lite path). Taking a lease is
an upsert whose update happens only when the stored lease has expired or is the caller's own,
so of concurrent callers exactly one gets it: PostgreSQL re-checks the condition on the row
version it locks, SQLite runs writes one at a time. Expiry times come from the store's clock:
the processes sharing a database must agree on the time to well within a lease's TTL.

On PostgreSQL a lease statement commits without waiting for the WAL flush (`synchronous_commit`
off for its own transaction only): taking the lease comes before every turn's first token, and
the flush cost 2-5 ms here against 0.3 ms for the statement. Visibility and row locks do not
change, so live workers still exclude each other; only a crash of the PostgreSQL server can
forget the lease writes of its last fraction of a second (fewer: a turn's own durable write
flushes the WAL before it), and a holder whose lease was forgotten finds out at its next
renewal, as after a stall (`LeaseLostError` in adapters/locks.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from functools import cache
from typing import Any

from sqlalchemy import Connection, Double, Text, bindparam, func, or_, select, true
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ColumnElement, Executable

from loopwright.engine.ports import Clock

from ._db import Database, Mode
from ._sqlite import LiteSql, lite_sql
from .tables import agent_leases

_c = agent_leases.c
_mine = (_c.agent_id == bindparam("b_id"), _c.owner == bindparam("b_owner"))


def _acquire(insert: Any, rows: Any) -> Any:
    """Insert the lease (`rows` gives it), or take the stored one over if it expired or is the
    caller's."""
    stmt = insert(agent_leases).from_select(["agent_id", "owner", "expires_at"], rows)
    return stmt.on_conflict_do_update(
        index_elements=[_c.agent_id],
        set_={"owner": stmt.excluded.owner, "expires_at": stmt.excluded.expires_at},
        where=or_(_c.expires_at <= bindparam("b_now"), _c.owner == bindparam("b_owner")),
    )


def _statements(*only: ColumnElement[bool]) -> tuple[Any, Any, Any]:
    """Acquire, renew and release; `only` narrows what each writes (see `_no_flush`)."""
    rows = select(
        bindparam("b_id", type_=Text),
        bindparam("b_owner", type_=Text),
        bindparam("b_until", type_=Double),
    ).where(*only)
    renew = agent_leases.update().where(*_mine, *only).values(expires_at=bindparam("b_until"))
    return rows, renew, agent_leases.delete().where(*_mine, *only)


def _no_flush() -> ColumnElement[bool]:
    """True, and the commit of the transaction that evaluates it does not wait for the WAL
    flush (PostgreSQL; a filter on the rows written, so it is set whenever one is)."""
    return func.set_config("synchronous_commit", "off", true()).is_not(None)


@cache
def _pg() -> tuple[Executable, Executable, Executable]:
    """PostgreSQL's statements, built on first use: acquire, renew, release."""
    # Imported here: a SQLite store never pays for the PostgreSQL dialect (see _db.py).
    from sqlalchemy.dialects import postgresql

    rows, renew, release = _statements(_no_flush())
    # RETURNING: a row comes back exactly when the insert or the take-over happened.
    acquire: Executable = _acquire(postgresql.insert, rows).returning(_c.owner)
    return acquire, renew, release


@cache
def _lite() -> tuple[LiteSql, LiteSql, LiteSql]:
    """SQLite's statements, compiled on first use: acquire, renew, release."""
    rows, renew, release = _statements()
    # SQLite reads `SELECT ... ON CONFLICT` unambiguously only after a WHERE (its upsert docs).
    acquire = _acquire(sqlite.insert, rows.where(true()))
    return lite_sql(acquire), lite_sql(renew), lite_sql(release)


def _changed(sql: LiteSql, params: Mapping[str, Any]) -> Any:
    """A lite body: run one statement, tell whether it changed a row."""

    def body(conn: sqlite3.Connection) -> bool:
        # An upsert whose WHERE refused the update changes no row (sqlite3_changes() == 0).
        return conn.execute(sql.text, sql.params(params)).rowcount == 1

    return body


class SqlAgentLeases:
    """`AgentLeases` on the `agent_leases` table; mixed into `SqlStore`."""

    _db: Database
    _clock: Clock

    async def acquire_lease(self, agent_id: str, owner: str, ttl_s: float) -> bool:
        """Take the agent's lease if it is free, expired or `owner`'s (see `AgentLeases`)."""
        now = self._clock.now()
        params = {"b_id": agent_id, "b_owner": owner, "b_until": now + ttl_s, "b_now": now}
        if not self._db.pg:
            return await self._db.run_lite(_changed(_lite()[0], params), Mode.STATEMENT)

        def body(conn: Connection) -> bool:
            return conn.execute(_pg()[0], params).first() is not None

        return await self._db.run(body, Mode.STATEMENT)

    async def renew_lease(self, agent_id: str, owner: str, ttl_s: float) -> bool:
        """Extend `owner`'s lease; False when another owner holds it, or nobody does."""
        params = {"b_id": agent_id, "b_owner": owner, "b_until": self._clock.now() + ttl_s}
        if not self._db.pg:
            return await self._db.run_lite(_changed(_lite()[1], params), Mode.STATEMENT)

        def body(conn: Connection) -> bool:
            return conn.execute(_pg()[1], params).rowcount == 1

        return await self._db.run(body, Mode.STATEMENT)

    async def release_lease(self, agent_id: str, owner: str) -> None:
        """Free the lease if `owner` holds it."""
        params = {"b_id": agent_id, "b_owner": owner}
        if not self._db.pg:
            await self._db.run_lite(_changed(_lite()[2], params), Mode.STATEMENT)
            return
        await self._db.run(lambda conn: conn.execute(_pg()[2], params), Mode.STATEMENT)
