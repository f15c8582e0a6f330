"""The `AgentStore` half of `SqlStore`: agents, memory blocks and the message log."""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Collection, Iterable, Sequence
from functools import cache
from typing import Any

import orjson
from attrs import frozen
from sqlalchemy import Connection, Table, bindparam, case, func, or_, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql import ColumnElement, Executable, Select

from loopwright.engine.ports import Clock
from loopwright.schemas import Agent, AgentContext, Block, Message
from loopwright.workflows.agent.errors import (
    AgentExistsError,
    AgentNotFoundError,
    VersionConflictError,
)

from . import tables as t
from ._db import AnyRow, Database, Mode
from ._rows import (
    agent_from_row,
    agent_row,
    block_from_row,
    block_row,
    dumps,
    in_context_order,
    message_from_row,
    message_row,
)
from ._sqlite import LiteSql, lite_sql

_by_id = select(t.agents).where(t.agents.c.id == bindparam("b_id"))
_by_name_or_id = (
    select(t.agents)
    .where(or_(t.agents.c.name == bindparam("b_key"), t.agents.c.id == bindparam("b_key")))
    .order_by(case((t.agents.c.name == bindparam("b_key"), 0), else_=1))
    .limit(1)
)
_version_of = select(t.agents.c.version).where(t.agents.c.id == bindparam("b_id"))
_exists = select(t.agents.c.id).where(t.agents.c.id == bindparam("b_id"))
_append = (
    t.agents.update()
    .where(t.agents.c.id == bindparam("b_id"))
    .values(
        in_context=bindparam("in_context"),
        version=t.agents.c.version + 1,
        message_count=t.agents.c.message_count + bindparam("b_added"),
    )
)
_set_context = (
    t.agents.update()
    .where(t.agents.c.id == bindparam("b_id"), t.agents.c.version == bindparam("b_version"))
    .values(in_context=bindparam("in_context"), version=t.agents.c.version + 1)
    .returning(*t.agents.c)
)
_edit = (
    t.agents.update()
    .where(t.agents.c.id == bindparam("b_id"))
    .values(version=t.agents.c.version + 1, last_edit_at=bindparam("b_now"))
    .returning(*t.agents.c)
)
_delete = t.agents.delete().where(t.agents.c.id == bindparam("b_id"))


def _context_query(pg: bool) -> Select[Any]:
    # One statement text whatever the context length: an array on PostgreSQL, JSON on SQLite.
    # By id only: with `agent_id = ?` too, planners may walk the agent's whole log by that
    # index instead of the unique index on `id`. Rows of other agents are dropped in Python.
    own = select(t.messages)
    if pg:
        from sqlalchemy.dialects.postgresql import ARRAY

        ids = bindparam("b_ids", type_=ARRAY(t.messages.c.id.type))
        return own.where(t.messages.c.id == func.any(ids))
    listed = func.json_each(bindparam("b_ids")).table_valued("value")
    return own.where(t.messages.c.id.in_(select(listed.c.value)))


def _blocks_query(pg: bool) -> Select[Any]:
    # Code-point order, as Python sorts: PostgreSQL would sort by the database's locale.
    label: ColumnElement[str] = t.blocks.c.label.collate("C") if pg else t.blocks.c.label
    return select(t.blocks).where(t.blocks.c.agent_id == bindparam("b_id")).order_by(label)


def _row_type(table: Table) -> Callable[[Iterable[Any]], Any]:
    """Rows of `select(table)` from sqlite3 tuples, read by name as SQLAlchemy's rows are."""
    row_class: Any = namedtuple("Row", [c.name for c in table.c])  # type: ignore[misc]
    make: Callable[[Iterable[Any]], Any] = row_class._make
    return make


_agent_row = _row_type(t.agents)
_block_row = _row_type(t.blocks)
_message_row = _row_type(t.messages)


@frozen
class _Lite:
    """SQLite's hot statements (see `_sqlite.py`)."""

    by_key: LiteSql
    by_id: LiteSql
    blocks: LiteSql
    context: LiteSql
    insert_message: LiteSql
    append: LiteSql


@cache
def _lite() -> _Lite:
    columns = [c.name for c in t.messages.c if c.name != "pos"]  # what message_row gives
    return _Lite(
        by_key=lite_sql(_by_name_or_id),
        by_id=lite_sql(_by_id),
        blocks=lite_sql(_blocks_query(False)),
        context=lite_sql(_context_query(False)),
        insert_message=lite_sql(sqlite_insert(t.messages).on_conflict_do_nothing(), columns),
        append=lite_sql(_append),
    )


def _fetch(conn: sqlite3.Connection, sql: LiteSql, params: dict[str, Any]) -> Any:
    """The first row of `sql` as a tuple, or None."""
    return conn.execute(sql.text, sql.params(params)).fetchone()


def _get_lite(conn: sqlite3.Connection, key: str) -> Any:
    found = _fetch(conn, _lite().by_key, {"b_key": key})
    return None if found is None else _agent_row(found)


def _append_lite(
    conn: sqlite3.Connection, agent_id: str, rows: dict[str, dict[str, Any]], in_context: bool
) -> Agent:
    lite = _lite()
    found = _fetch(conn, lite.by_id, {"b_id": agent_id})
    if found is None:
        raise AgentNotFoundError(agent_id)
    agent = _agent_row(found)
    insert = lite.insert_message
    stored = {i for i, r in rows.items() if conn.execute(insert.text, insert.params(r)).rowcount}
    if not stored:
        return agent_from_row(agent)
    update = _appended(agent, rows, stored, in_context=in_context)
    conn.execute(lite.append.text, lite.append.params(update))
    return agent_from_row(agent, version=agent.version + 1)


def _appended(
    agent: Any, rows: dict[str, Any], stored: Collection[str], *, in_context: bool
) -> dict[str, Any]:
    """The parameters of `_append` once `stored` (ids of `rows`) were inserted."""
    context = orjson.loads(agent.in_context)
    if in_context:
        context.extend(i for i in rows if i in stored)
    return {"b_id": agent.id, "b_added": len(stored), "in_context": dumps(context)}


def _load_context_lite(conn: sqlite3.Connection, agent_id: str) -> AgentContext:
    lite = _lite()
    found = _fetch(conn, lite.by_id, {"b_id": agent_id})
    if found is None:
        raise AgentNotFoundError(agent_id)
    row = _agent_row(found)
    params = {"b_id": agent_id}
    blocks = [_block_row(b) for b in conn.execute(lite.blocks.text, lite.blocks.params(params))]
    ids: list[str] = orjson.loads(row.in_context)
    messages = []
    if ids:
        listed = conn.execute(lite.context.text, lite.context.params({"b_ids": row.in_context}))
        messages = [_message_row(m) for m in listed]
    return _context(row, ids, blocks, messages)


def _context(
    row: Any, ids: list[str], blocks: Iterable[Any], messages: Iterable[Any]
) -> AgentContext:
    """The AgentContext of an agent row, its block rows and the rows of its listed messages
    (rows of other agents' messages are dropped here, see `_context_query`)."""
    own = [m for m in messages if m.agent_id == row.id]
    return AgentContext(
        agent=agent_from_row(row),
        blocks=tuple(block_from_row(b) for b in blocks),
        messages=in_context_order(ids, own),
        total_messages=row.message_count,
        last_edit_at=row.last_edit_at,
    )


class SqlAgentStore:
    """`AgentStore` on the `agents`, `blocks` and `messages` tables; mixed into `SqlStore`.

    Each method prepares its rows on the event loop and runs a body (a plain function of one
    connection) through `Database.run`; on SQLite, the calls of every turn (`get_agent`,
    `append_messages`, `load_context`) run a lite body on bare sqlite3 (`Database.run_lite`)."""

    _db: Database
    _clock: Clock
    _q_context: Select[Any]
    _q_blocks: Select[Any]
    _q_agents: Select[Any]
    _q_lock_agent: Select[Any]
    _q_insert_messages: Executable
    _q_insert_agent: Executable
    _q_put_block: Executable

    def _setup_agent_statements(self) -> None:
        pg = self._db.pg
        insert = self._db.insert
        self._q_context = _context_query(pg)
        self._q_blocks = _blocks_query(pg)
        # Code-point order, as Python sorts: PostgreSQL would sort by the database's locale.
        name: ColumnElement[str] = t.agents.c.name.collate("C") if pg else t.agents.c.name
        self._q_agents = select(t.agents).order_by(name)
        self._q_lock_agent = _by_id.with_for_update() if pg else _by_id
        self._q_insert_messages = (
            insert(t.messages).on_conflict_do_nothing().returning(t.messages.c.id)
        )
        self._q_insert_agent = insert(t.agents).on_conflict_do_nothing().returning(t.agents.c.id)
        upsert = insert(t.blocks)
        self._q_put_block = upsert.on_conflict_do_update(
            index_elements=[t.blocks.c.agent_id, t.blocks.c.label],
            set_={c: upsert.excluded[c] for c in ("value", "limit", "read_only", "description")},
        )

    async def create_agent(self, agent: Agent, blocks: Sequence[Block] = ()) -> Agent:
        """Insert an agent and its blocks (an id already stored returns the stored agent).

        Raises: AgentExistsError (the name belongs to another agent)."""
        pg = self._db.pg
        row = agent_row(agent, pg=pg)
        block_rows = [block_row(agent.id, b, pg=pg) for b in blocks]

        def body(conn: Connection) -> Agent:
            if conn.execute(self._q_insert_agent, row).first() is None:
                stored = conn.execute(_by_id, {"b_id": agent.id}).first()
                if stored is None:
                    raise AgentExistsError(agent.name)
                return agent_from_row(stored)
            if block_rows:
                conn.execute(self._q_put_block, block_rows)
            return agent

        return await self._db.run(body, Mode.WRITE)

    async def get_agent(self, name_or_id: str) -> Agent:
        """Look up by name, then id. Raises: AgentNotFoundError."""

        def body(conn: Connection) -> AnyRow | None:
            return conn.execute(_by_name_or_id, {"b_key": name_or_id}).first()

        if self._db.pg:
            row = await self._db.run(body, Mode.READ)
        else:
            row = await self._db.run_lite(lambda conn: _get_lite(conn, name_or_id), Mode.READ)
        if row is None:
            raise AgentNotFoundError(name_or_id)
        return agent_from_row(row)

    async def list_agents(self) -> Sequence[Agent]:
        """All agents, by name."""

        def body(conn: Connection) -> Sequence[AnyRow]:
            return conn.execute(self._q_agents).all()

        return [agent_from_row(row) for row in await self._db.run(body, Mode.READ)]

    async def delete_agent(self, agent_id: str) -> None:
        """Delete an agent with its blocks and messages. Raises: AgentNotFoundError."""

        def body(conn: Connection) -> int:
            return conn.execute(_delete, {"b_id": agent_id}).rowcount

        if await self._db.run(body, Mode.STATEMENT) == 0:
            raise AgentNotFoundError(agent_id)

    async def put_block(self, agent_id: str, block: Block) -> Agent:
        """Insert or replace a block by label; returns the agent at its new version."""
        edit = {"b_id": agent_id, "b_now": self._clock.now()}
        row = block_row(agent_id, block, pg=self._db.pg)

        def body(conn: Connection) -> Agent:
            edited = conn.execute(_edit, edit).first()  # locks the agent row first
            if edited is None:
                raise AgentNotFoundError(agent_id)
            conn.execute(self._q_put_block, row)
            return agent_from_row(edited)

        return await self._db.run(body, Mode.WRITE)

    async def append_messages(
        self, agent_id: str, messages: Sequence[Message], *, in_context: bool = True
    ) -> Agent:
        """Store new messages and, when `in_context`, append their ids to the context, in one
        transaction; returns the agent, at a new version if anything was stored."""
        pg = self._db.pg
        unique = {m.id: message_row(agent_id, m, pg=pg) for m in messages}
        if not pg:
            return await self._db.run_lite(
                lambda conn: _append_lite(conn, agent_id, unique, in_context), Mode.WRITE
            )
        rows = list(unique.values())

        def body(conn: Connection) -> Agent:
            agent = conn.execute(self._q_lock_agent, {"b_id": agent_id}).first()
            if agent is None:
                raise AgentNotFoundError(agent_id)
            stored = set(conn.execute(self._q_insert_messages, rows).scalars()) if rows else ()
            if not stored:
                return agent_from_row(agent)
            conn.execute(_append, _appended(agent, unique, stored, in_context=in_context))
            return agent_from_row(agent, version=agent.version + 1)

        return await self._db.run(body, Mode.WRITE)

    async def set_context(
        self, agent_id: str, message_ids: Sequence[str], *, expected_version: int
    ) -> Agent:
        """Replace the in-context list if the agent is still at `expected_version`.

        Raises: VersionConflictError, AgentNotFoundError."""
        context = dumps(list(message_ids))
        params = {"b_id": agent_id, "b_version": expected_version, "in_context": context}

        def body(conn: Connection) -> Agent:
            row = conn.execute(_set_context, params).first()
            if row is not None:
                return agent_from_row(row)
            actual = conn.scalar(_version_of, {"b_id": agent_id})
            if actual is None:
                raise AgentNotFoundError(agent_id)
            raise VersionConflictError(agent_id, expected_version, actual)

        return await self._db.run(body, Mode.STATEMENT)

    async def load_context(self, agent_id: str) -> AgentContext:
        """The agent, its blocks and its in-context messages, in order: three queries whatever
        the length of the log."""
        if not self._db.pg:
            return await self._db.run_lite(
                lambda conn: _load_context_lite(conn, agent_id), Mode.SNAPSHOT
            )
        return await self._db.run(lambda conn: self._load_context(conn, agent_id), Mode.SNAPSHOT)

    def _load_context(self, conn: Connection, agent_id: str) -> AgentContext:
        row = conn.execute(_by_id, {"b_id": agent_id}).first()
        if row is None:
            raise AgentNotFoundError(agent_id)
        block_rows = conn.execute(self._q_blocks, {"b_id": agent_id}).all()
        ids: list[str] = orjson.loads(row.in_context)
        listed = conn.execute(self._q_context, {"b_ids": ids}).all() if ids else []
        return _context(row, ids, block_rows, listed)

    async def list_messages(
        self, agent_id: str, *, limit: int | None = None, before: str | None = None
    ) -> Sequence[Message]:
        """Stored log in insertion order; `before`/`limit` page backwards from the end (an id
        `before` that is not in this agent's log gives an empty page)."""
        m = t.messages.c
        query = select(t.messages).where(m.agent_id == agent_id)
        if before is not None:
            cursor = select(m.pos).where(m.id == before, m.agent_id == agent_id)
            query = query.where(m.pos < cursor.scalar_subquery())
        if limit is None:
            query = query.order_by(m.pos)
        else:
            query = query.order_by(m.pos.desc()).limit(limit)

        def body(conn: Connection) -> list[Message]:
            found = [message_from_row(r) for r in conn.execute(query)]
            if not found and conn.scalar(_exists, {"b_id": agent_id}) is None:
                raise AgentNotFoundError(agent_id)
            return found if limit is None else found[::-1]

        return await self._db.run(body, Mode.SNAPSHOT)
