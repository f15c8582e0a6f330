"""The `RunStore` half of `SqlStore`: run records with compare-and-set writes and fencing."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import cache
from typing import Any, NoReturn

from sqlalchemy import Connection, and_, bindparam, or_, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from loopwright.engine.errors import RunNotFoundError, StaleWriteError
from loopwright.schemas import RunRecord

from ._db import AnyRow, Database, Mode
from ._rows import run_from_row, run_row
from ._sqlite import LiteSql, lite_sql
from .tables import runs

_UNFINISHED = ("running", "background")

# A write is fresh when its epoch is newer, or the same epoch at the same or a later seq.
_save = (
    runs.update()
    .where(
        runs.c.id == bindparam("b_id"),
        or_(
            runs.c.epoch < bindparam("b_epoch"),
            and_(runs.c.epoch == bindparam("b_epoch"), runs.c.seq <= bindparam("b_seq")),
        ),
    )
    .values(
        workflow=bindparam("workflow"),
        key=bindparam("key"),
        status=bindparam("status"),
        state=bindparam("state"),
        seq=bindparam("seq"),
        epoch=bindparam("epoch"),
        record=bindparam("record"),
        updated_at=bindparam("updated_at"),
    )
)
_claim = (
    runs.update()
    .where(runs.c.id == bindparam("b_id"))
    .values(epoch=runs.c.epoch + 1)
    .returning(runs.c.record, runs.c.epoch)
)
_load = select(runs.c.record, runs.c.epoch).where(runs.c.id == bindparam("b_id"))
_position = select(runs.c.epoch, runs.c.seq).where(runs.c.id == bindparam("b_id"))


@cache
def _lite() -> tuple[LiteSql, LiteSql, LiteSql]:
    """SQLite's hot statements, compiled on first use: save, position, create."""
    create = sqlite_insert(runs).on_conflict_do_nothing()
    columns = [c.name for c in runs.c if c.name != "pos"]  # what run_row gives
    return lite_sql(_save), lite_sql(_position), lite_sql(create, columns)


def _create_lite(conn: sqlite3.Connection, row: dict[str, Any]) -> None:
    create = _lite()[2]
    conn.execute(create.text, create.params(row))


def _save_lite(conn: sqlite3.Connection, record: RunRecord, params: dict[str, Any]) -> None:
    save, position, _ = _lite()
    if conn.execute(save.text, save.params(params)).rowcount != 1:
        found = conn.execute(position.text, position.params({"b_id": record.id})).fetchone()
        _refused(record, found)


def _refused(record: RunRecord, position: Any) -> NoReturn:
    """Raise why a save wrote nothing: the row is missing or has moved past the record (it
    may have moved on since the refusal, that's fine)."""
    if position is None:
        raise RunNotFoundError(record.id)
    epoch, seq = position
    raise StaleWriteError(record.id, record.epoch, record.seq, epoch, seq)


class SqlRunStore:
    """`RunStore` on the `runs` table; mixed into `SqlStore`."""

    _db: Database

    async def create(self, record: RunRecord) -> None:
        """Insert a new run record (no-op if the id exists)."""
        row = run_row(record)
        if not self._db.pg:
            await self._db.run_lite(lambda conn: _create_lite(conn, row), Mode.STATEMENT)
            return
        stmt = self._db.insert(runs).values(row).on_conflict_do_nothing()
        await self._db.run(lambda conn: conn.execute(stmt), Mode.STATEMENT)

    async def load(self, run_id: str) -> RunRecord | None:
        """Return the record, or None if there is none."""

        def body(conn: Connection) -> AnyRow | None:
            return conn.execute(_load, {"b_id": run_id}).first()

        row = await self._db.run(body, Mode.READ)
        return None if row is None else run_from_row(row.record, row.epoch)

    async def save(self, record: RunRecord) -> None:
        """Write a checkpoint unless it is stale. Raises: StaleWriteError, RunNotFoundError."""
        params = run_row(record)
        del params["id"], params["created_at"]
        params.update(b_id=record.id, b_epoch=record.epoch, b_seq=record.seq)
        if not self._db.pg:
            await self._db.run_lite(lambda conn: _save_lite(conn, record, params), Mode.STATEMENT)
            return

        def body(conn: Connection) -> None:
            if conn.execute(_save, params).rowcount != 1:
                _refused(record, conn.execute(_position, {"b_id": record.id}).first())

        await self._db.run(body, Mode.STATEMENT)

    async def claim(self, run_id: str) -> RunRecord:
        """Take the lease: bump the epoch and return the record. Raises: RunNotFoundError."""

        def body(conn: Connection) -> AnyRow | None:
            return conn.execute(_claim, {"b_id": run_id}).first()

        row = await self._db.run(body, Mode.STATEMENT)
        if row is None:
            raise RunNotFoundError(run_id)
        return run_from_row(row.record, row.epoch)

    async def list_runs(
        self, *, unfinished: bool = False, key: str | None = None, limit: int = 100
    ) -> Sequence[RunRecord]:
        """Newest first; `unfinished` keeps status `running` or `background` only."""
        query = select(runs.c.record, runs.c.epoch).order_by(runs.c.pos.desc()).limit(limit)
        if unfinished:
            query = query.where(runs.c.status.in_(_UNFINISHED))
        if key is not None:
            query = query.where(runs.c.key == key)

        def body(conn: Connection) -> Sequence[AnyRow]:
            return conn.execute(query).all()

        return [run_from_row(row.record, row.epoch) for row in await self._db.run(body, Mode.READ)]
