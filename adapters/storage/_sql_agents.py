"""The `AgentStore` half of `SqlStore`: agents, memory blocks and the message log.

Statements are in `_agent_sql.py`; SQLite's hot path (the calls of every turn) in
`_agent_lite.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, select
from sqlalchemy.sql import Executable, Select

from loopwright.engine.ports import Clock
from loopwright.schemas import Agent, AgentContext, Block, Message
from loopwright.workflows.agent.errors import (
    AgentExistsError,
    AgentNotFoundError,
    DiscardRefusedError,
    VersionConflictError,
)

from . import _agent_sql as q
from . import tables as t
from ._agent_lite import append_lite, find_lite, get_lite, load_context_lite
from ._db import AnyRow, Database, Mode
from ._rows import (
    agent_from_row,
    agent_row,
    block_row,
    context_from_rows,
    dumps,
    message_from_row,
    message_row,
)


class SqlAgentStore:
    """`AgentStore` on the `agents`, `blocks` and `messages` tables; mixed into `SqlStore`.

    Each method prepares its rows on the event loop and runs a body (a plain function of one
    connection) through `Database.run`; on SQLite, the calls of every turn (`get_agent`,
    `append_messages`, `load_context`, `find_messages`) run a lite body on bare sqlite3
    (`Database.run_lite`)."""

    _db: Database
    _clock: Clock
    _q_context: Select[Any]
    _q_blocks: Select[Any]
    _q_by_key: Select[Any]
    _q_by_key_in_tenant: Select[Any]
    _q_agents: Select[Any]
    _q_agents_of: Select[Any]
    _q_find: Select[Any]
    _q_positions: Select[Any]
    _q_lock_agent: Select[Any]
    _q_insert_messages: Executable
    _q_insert_agent: Executable
    _q_put_block: Executable

    def _setup_agent_statements(self) -> None:
        pg = self._db.pg
        insert = self._db.insert
        self._q_context = q.context_query(pg)
        self._q_blocks = q.blocks_query(pg)
        self._q_by_key = q.by_key(pg, tenant=False)
        self._q_by_key_in_tenant = q.by_key(pg, tenant=True)
        self._q_agents = q.agents_query(pg, tenant=False)
        self._q_agents_of = q.agents_query(pg, tenant=True)
        self._q_find = q.find_query(pg)
        self._q_positions = q.positions_query(pg)
        self._q_lock_agent = q.by_id.with_for_update() if pg else q.by_id
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
                stored = conn.execute(q.by_id, {"b_id": agent.id}).first()
                if stored is None:
                    raise AgentExistsError(agent.name)
                return agent_from_row(stored)
            if block_rows:
                conn.execute(self._q_put_block, block_rows)
            return agent

        return await self._db.run(body, Mode.WRITE)

    async def get_agent(self, name_or_id: str, *, tenant: str | None = None) -> Agent:
        """Look up by name, then id; with `tenant`, among that tenant's agents only (without,
        a name held in several tenants resolves to the first tenant by code point, `""`
        first). Raises: AgentNotFoundError."""
        if not self._db.pg:
            row = await self._db.run_lite(
                lambda conn: get_lite(conn, name_or_id, tenant), Mode.READ
            )
        elif tenant is None:
            row = await self._first(self._q_by_key, {"b_key": name_or_id})
        else:
            params = {"b_key": name_or_id, "b_tenant": tenant}
            row = await self._first(self._q_by_key_in_tenant, params)
        if row is None:
            raise AgentNotFoundError(name_or_id)
        return agent_from_row(row)

    async def _first(self, query: Select[Any], params: dict[str, Any]) -> AnyRow | None:
        return await self._db.run(lambda conn: conn.execute(query, params).first(), Mode.READ)

    async def list_agents(self, *, tenant: str | None = None) -> Sequence[Agent]:
        """All agents (of `tenant` when given), by name, then tenant (code-point order)."""
        query = self._q_agents if tenant is None else self._q_agents_of
        params = {} if tenant is None else {"b_tenant": tenant}

        def body(conn: Connection) -> Sequence[AnyRow]:
            return conn.execute(query, params).all()

        return [agent_from_row(row) for row in await self._db.run(body, Mode.READ)]

    async def delete_agent(self, agent_id: str) -> None:
        """Delete an agent with its blocks and messages. Raises: AgentNotFoundError."""

        def body(conn: Connection) -> int:
            return conn.execute(q.delete, {"b_id": agent_id}).rowcount

        if await self._db.run(body, Mode.STATEMENT) == 0:
            raise AgentNotFoundError(agent_id)

    async def put_block(self, agent_id: str, block: Block) -> Agent:
        """Insert or replace a block by label; returns the agent at its new version."""
        edit = {"b_id": agent_id, "b_now": self._clock.now()}
        row = block_row(agent_id, block, pg=self._db.pg)

        def body(conn: Connection) -> Agent:
            edited = conn.execute(q.edit, edit).first()  # locks the agent row first
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
                lambda conn: append_lite(conn, agent_id, unique, in_context), Mode.WRITE
            )
        rows = list(unique.values())

        def body(conn: Connection) -> Agent:
            agent = conn.execute(self._q_lock_agent, {"b_id": agent_id}).first()
            if agent is None:
                raise AgentNotFoundError(agent_id)
            stored = set(conn.execute(self._q_insert_messages, rows).scalars()) if rows else ()
            if not stored:
                return agent_from_row(agent)
            conn.execute(q.append, q.appended(agent, unique, stored, in_context=in_context))
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
            row = conn.execute(q.set_context, params).first()
            if row is not None:
                return agent_from_row(row)
            actual = conn.scalar(q.version_of, {"b_id": agent_id})
            if actual is None:
                raise AgentNotFoundError(agent_id)
            raise VersionConflictError(agent_id, expected_version, actual)

        return await self._db.run(body, Mode.STATEMENT)

    async def load_context(self, agent_id: str) -> AgentContext:
        """The agent, its blocks and its in-context messages, in order: three queries whatever
        the length of the log."""
        if not self._db.pg:
            return await self._db.run_lite(
                lambda conn: load_context_lite(conn, agent_id), Mode.SNAPSHOT
            )
        return await self._db.run(lambda conn: self._load_context(conn, agent_id), Mode.SNAPSHOT)

    def _load_context(self, conn: Connection, agent_id: str) -> AgentContext:
        row = conn.execute(q.by_id, {"b_id": agent_id}).first()
        if row is None:
            raise AgentNotFoundError(agent_id)
        block_rows = conn.execute(self._q_blocks, {"b_id": agent_id}).all()
        ids: list[str] = orjson.loads(row.in_context)
        listed = conn.execute(self._q_context, {"b_ids": ids}).all() if ids else []
        return context_from_rows(row, ids, block_rows, listed)

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
            if not found and conn.scalar(q.exists, {"b_id": agent_id}) is None:
                raise AgentNotFoundError(agent_id)
            return found if limit is None else found[::-1]

        return await self._db.run(body, Mode.SNAPSHOT)

    async def find_messages(
        self, agent_id: str, *, ids: Sequence[str] = (), run_id: str | None = None
    ) -> Sequence[Message]:
        """Stored messages with one of `ids`, or produced by `run_id` (either filter, or both
        ORed), in log order: one query, by the indexes on `id` and `run_id`.

        Raises: AgentNotFoundError."""
        if not self._db.pg:
            return await self._db.run_lite(
                lambda conn: find_lite(conn, agent_id, ids, run_id), Mode.READ
            )
        params = {"b_ids": list(ids), "b_run": run_id}

        def body(conn: Connection) -> list[Message]:
            rows = conn.execute(self._q_find, params)
            found = [message_from_row(r) for r in rows if r.agent_id == agent_id]
            if not found and conn.scalar(q.exists, {"b_id": agent_id}) is None:
                raise AgentNotFoundError(agent_id)
            return found

        return await self._db.run(body, Mode.SNAPSHOT)

    async def discard_messages(self, agent_id: str, ids: Sequence[str]) -> Agent:
        """Remove the newest messages of the log, listed in `ids`, from the log and the context
        in one transaction; returns the agent, at a new version if anything was removed.

        Raises: DiscardRefusedError (an id of `ids` is followed by a message not in `ids`;
        nothing changed), AgentNotFoundError."""
        listed = q.ids_param(self._db.pg, ids)

        def body(conn: Connection) -> Agent:
            agent = conn.execute(self._q_lock_agent, {"b_id": agent_id}).first()
            if agent is None:
                raise AgentNotFoundError(agent_id)
            rows = conn.execute(self._q_positions, {"b_ids": listed}) if ids else ()
            found = {r.id: r.pos for r in rows if r.agent_id == agent_id}
            if not found:
                return agent_from_row(agent)
            first = min(found.values())
            tail = {"b_id": agent_id, "b_pos": first}
            if conn.scalar(q.tail_size, tail) != len(found):
                raise DiscardRefusedError(agent_id, min(found, key=found.__getitem__))
            conn.execute(q.drop_tail, tail)
            context = [i for i in orjson.loads(agent.in_context) if i not in found]
            update = {"b_id": agent_id, "b_removed": len(found), "in_context": dumps(context)}
            conn.execute(q.discarded, update)
            return agent_from_row(agent, version=agent.version + 1)

        return await self._db.run(body, Mode.WRITE)
