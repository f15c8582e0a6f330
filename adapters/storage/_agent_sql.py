"""The statements of the agent store: constants, and builders for what differs by dialect.

A builder's `pg` says PostgreSQL (else SQLite). Parameters are named `b_*` (or by the column
they set); SQLite's hot path compiles the same statements once (`_agent_lite.py`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import orjson
from sqlalchemy import bindparam, case, func, or_, select
from sqlalchemy.sql import ColumnElement, Select

from . import tables as t
from ._rows import dumps

_a = t.agents.c
_m = t.messages.c

by_id = select(t.agents).where(_a.id == bindparam("b_id"))
version_of = select(_a.version).where(_a.id == bindparam("b_id"))
exists = select(_a.id).where(_a.id == bindparam("b_id"))
append = (
    t.agents.update()
    .where(_a.id == bindparam("b_id"))
    .values(
        in_context=bindparam("in_context"),
        version=_a.version + 1,
        message_count=_a.message_count + bindparam("b_added"),
    )
)
set_context = (
    t.agents.update()
    .where(_a.id == bindparam("b_id"), _a.version == bindparam("b_version"))
    .values(in_context=bindparam("in_context"), version=_a.version + 1)
    .returning(*t.agents.c)
)
edit = (
    t.agents.update()
    .where(_a.id == bindparam("b_id"))
    .values(version=_a.version + 1, last_edit_at=bindparam("b_now"))
    .returning(*t.agents.c)
)
delete = t.agents.delete().where(_a.id == bindparam("b_id"))

# discard_messages: the size of the agent's log from position `b_pos` on, then its removal.
tail_size = (
    select(func.count())
    .select_from(t.messages)
    .where(_m.agent_id == bindparam("b_id"), _m.pos >= bindparam("b_pos"))
)
drop_tail = t.messages.delete().where(
    _m.agent_id == bindparam("b_id"), _m.pos >= bindparam("b_pos")
)
discarded = (
    t.agents.update()
    .where(_a.id == bindparam("b_id"))
    .values(
        in_context=bindparam("in_context"),
        version=_a.version + 1,
        message_count=_a.message_count - bindparam("b_removed"),
    )
)


def appended(
    agent: Any, rows: dict[str, Any], stored: Collection[str], *, in_context: bool
) -> dict[str, Any]:
    """The parameters of `append` once `stored` (ids of `rows`) were inserted."""
    context = orjson.loads(agent.in_context)
    if in_context:
        context.extend(i for i in rows if i in stored)
    return {"b_id": agent.id, "b_added": len(stored), "in_context": dumps(context)}


def code_points(column: ColumnElement[str], pg: bool) -> ColumnElement[str]:
    """`column` for ORDER BY in code-point order, as Python sorts (PostgreSQL would sort by
    the database's locale)."""
    return column.collate("C") if pg else column


def by_key(pg: bool, *, tenant: bool) -> Select[Any]:
    """The agent named `b_key`, else the one whose id it is: in tenant `b_tenant` if `tenant`,
    else a name held in several tenants resolves to the first tenant by code point."""
    key = bindparam("b_key", type_=_a.name.type)
    query = select(t.agents).where(or_(_a.name == key, _a.id == key)).limit(1)
    name_first = case((_a.name == key, 0), else_=1)
    if tenant:
        return query.where(_a.tenant == bindparam("b_tenant")).order_by(name_first)
    return query.order_by(name_first, code_points(_a.tenant, pg))


def agents_query(pg: bool, *, tenant: bool) -> Select[Any]:
    """All agents (of tenant `b_tenant` if `tenant`), by name, then tenant."""
    query = select(t.agents).order_by(code_points(_a.name, pg), code_points(_a.tenant, pg))
    return query.where(_a.tenant == bindparam("b_tenant")) if tenant else query


def blocks_query(pg: bool) -> Select[Any]:
    """The blocks of agent `b_id`, by label."""
    label = code_points(t.blocks.c.label, pg)
    return select(t.blocks).where(t.blocks.c.agent_id == bindparam("b_id")).order_by(label)


def listed_ids(pg: bool) -> ColumnElement[bool]:
    """`messages.id` is one of `b_ids` (see `ids_param`): one statement text whatever the
    number of ids, an array on PostgreSQL, a JSON list on SQLite."""
    if pg:
        from sqlalchemy.dialects.postgresql import ARRAY

        ids = bindparam("b_ids", type_=ARRAY(_m.id.type))
        return _m.id == func.any(ids)
    listed = func.json_each(bindparam("b_ids")).table_valued("value")
    return _m.id.in_(select(listed.c.value))


def ids_param(pg: bool, ids: Sequence[str]) -> list[str] | str:
    """The value of `b_ids` in `listed_ids`."""
    return list(ids) if pg else dumps(list(ids))


# The message queries below select by id or run only: with `agent_id = ?` too, planners may
# walk the agent's whole log by that index instead of the unique index on `id` (or the one on
# `run_id`). Rows of other agents are dropped in Python.


def context_query(pg: bool) -> Select[Any]:
    """The messages listed in `b_ids` (any agent's)."""
    return select(t.messages).where(listed_ids(pg))


def find_query(pg: bool) -> Select[Any]:
    """The messages listed in `b_ids` or of run `b_run` (any agent's), in log order."""
    found = or_(listed_ids(pg), _m.run_id == bindparam("b_run"))
    return select(t.messages).where(found).order_by(_m.pos)


def positions_query(pg: bool) -> Select[Any]:
    """Id, agent and position of the messages listed in `b_ids` (any agent's)."""
    return select(_m.id, _m.agent_id, _m.pos).where(listed_ids(pg))
