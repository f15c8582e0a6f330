"""SQLite's hot path of the agent store: the reads and writes of every turn on bare sqlite3.

Each function is a lite body (see `_sqlite.py`): it runs the statements of `_agent_sql.py`,
compiled once, on one sqlite3 connection in a worker thread, and reads rows by name as
SQLAlchemy's rows are read, so `_rows.py` converts both.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Any

import orjson
from attrs import frozen
from sqlalchemy import Table
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from loopwright.schemas import Agent, AgentContext, Message
from loopwright.workflows.agent.errors import AgentNotFoundError

from . import _agent_sql as q
from . import tables as t
from ._rows import agent_from_row, context_from_rows, dumps, message_from_row
from ._sqlite import LiteSql, lite_sql


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
    """SQLite's hot statements."""

    by_key: LiteSql
    by_key_in_tenant: LiteSql
    by_id: LiteSql
    blocks: LiteSql
    context: LiteSql
    find: LiteSql
    insert_message: LiteSql
    append: LiteSql


@cache
def _lite() -> _Lite:
    columns = [c.name for c in t.messages.c if c.name != "pos"]  # what message_row gives
    return _Lite(
        by_key=lite_sql(q.by_key(False, tenant=False)),
        by_key_in_tenant=lite_sql(q.by_key(False, tenant=True)),
        by_id=lite_sql(q.by_id),
        blocks=lite_sql(q.blocks_query(False)),
        context=lite_sql(q.context_query(False)),
        find=lite_sql(q.find_query(False)),
        insert_message=lite_sql(sqlite_insert(t.messages).on_conflict_do_nothing(), columns),
        append=lite_sql(q.append),
    )


def _fetch(conn: sqlite3.Connection, sql: LiteSql, params: dict[str, Any]) -> Any:
    """The first row of `sql` as a tuple, or None."""
    return conn.execute(sql.text, sql.params(params)).fetchone()


def _agent(conn: sqlite3.Connection, agent_id: str) -> Any:
    """The row of agent `agent_id`. Raises: AgentNotFoundError."""
    found = _fetch(conn, _lite().by_id, {"b_id": agent_id})
    if found is None:
        raise AgentNotFoundError(agent_id)
    return _agent_row(found)


def get_lite(conn: sqlite3.Connection, key: str, tenant: str | None) -> Any:
    """The row of the agent `key` names (see `_agent_sql.by_key`), or None."""
    lite = _lite()
    if tenant is None:
        found = _fetch(conn, lite.by_key, {"b_key": key})
    else:
        found = _fetch(conn, lite.by_key_in_tenant, {"b_key": key, "b_tenant": tenant})
    return None if found is None else _agent_row(found)


def append_lite(
    conn: sqlite3.Connection, agent_id: str, rows: dict[str, dict[str, Any]], in_context: bool
) -> Agent:
    """`append_messages` of the rows of new messages, by id."""
    lite = _lite()
    agent = _agent(conn, agent_id)
    insert = lite.insert_message
    stored = {i for i, r in rows.items() if conn.execute(insert.text, insert.params(r)).rowcount}
    if not stored:
        return agent_from_row(agent)
    update = q.appended(agent, rows, stored, in_context=in_context)
    conn.execute(lite.append.text, lite.append.params(update))
    return agent_from_row(agent, version=agent.version + 1)


def load_context_lite(conn: sqlite3.Connection, agent_id: str) -> AgentContext:
    """`load_context`: three queries whatever the length of the log."""
    lite = _lite()
    row = _agent(conn, agent_id)
    params = {"b_id": agent_id}
    blocks = [_block_row(b) for b in conn.execute(lite.blocks.text, lite.blocks.params(params))]
    ids: list[str] = orjson.loads(row.in_context)
    messages = []
    if ids:
        listed = conn.execute(lite.context.text, lite.context.params({"b_ids": row.in_context}))
        messages = [_message_row(m) for m in listed]
    return context_from_rows(row, ids, blocks, messages)


def find_lite(
    conn: sqlite3.Connection, agent_id: str, ids: Sequence[str], run_id: str | None
) -> list[Message]:
    """`find_messages`: one query (two when nothing is found: is there such an agent?)."""
    find = _lite().find
    params = {"b_ids": dumps(list(ids)), "b_run": run_id}
    rows = [_message_row(r) for r in conn.execute(find.text, find.params(params))]
    found = [message_from_row(r) for r in rows if r.agent_id == agent_id]
    if not found:
        _agent(conn, agent_id)
    return found
