"""The `AgentStore` half of `SqlStore`: agents, memory blocks and the message log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, case, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
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
        ids = bindparam("b_ids", type_=ARRAY(t.messages.c.id.type))
        return own.where(t.messages.c.id == func.any(ids))
    listed = func.json_each(bindparam("b_ids")).table_valued("value")
    return own.where(t.messages.c.id.in_(select(listed.c.value)))


class SqlAgentStore:
    """`AgentStore` on the `agents`, `blocks` and `messages` tables; mixed into `SqlStore`.

    Each method prepares its rows on the event loop and runs a body (a plain function of one
    connection) through `Database.run`."""

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
        # Code-point order, as Python sorts: PostgreSQL would sort by the database's locale.
        label: ColumnElement[str] = t.blocks.c.label.collate("C") if pg else t.blocks.c.label
        name: ColumnElement[str] = t.agents.c.name.collate("C") if pg else t.agents.c.name
        own_blocks = select(t.blocks).where(t.blocks.c.agent_id == bindparam("b_id"))
        self._q_blocks = own_blocks.order_by(label)
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

        row = await self._db.run(body, Mode.READ)
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
        rows = list(unique.values())

        def body(conn: Connection) -> Agent:
            agent = conn.execute(self._q_lock_agent, {"b_id": agent_id}).first()
            if agent is None:
                raise AgentNotFoundError(agent_id)
            stored = set(conn.execute(self._q_insert_messages, rows).scalars()) if rows else ()
            if not stored:
                return agent_from_row(agent)
            context = orjson.loads(agent.in_context)
            if in_context:
                context.extend(i for i in unique if i in stored)
            update = {"b_id": agent_id, "b_added": len(stored), "in_context": dumps(context)}
            conn.execute(_append, update)
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
        return await self._db.run(lambda conn: self._load_context(conn, agent_id), Mode.SNAPSHOT)

    def _load_context(self, conn: Connection, agent_id: str) -> AgentContext:
        row = conn.execute(_by_id, {"b_id": agent_id}).first()
        if row is None:
            raise AgentNotFoundError(agent_id)
        block_rows = conn.execute(self._q_blocks, {"b_id": agent_id}).all()
        ids: list[str] = orjson.loads(row.in_context)
        message_rows: list[AnyRow] = []
        if ids:
            listed = conn.execute(
                self._q_context, {"b_ids": ids if self._db.pg else row.in_context}
            )
            message_rows = [r for r in listed if r.agent_id == agent_id]
        return AgentContext(
            agent=agent_from_row(row),
            blocks=tuple(block_from_row(b) for b in block_rows),
            messages=in_context_order(ids, message_rows),
            total_messages=row.message_count,
            last_edit_at=row.last_edit_at,
        )

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
