"""Conversions between the schema's data types and table rows (plain dicts and Row objects)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import attrs
import orjson

from loopwright.schemas import (
    Agent,
    AgentContext,
    Block,
    Message,
    Role,
    RunRecord,
    ToolCall,
    converter,
)

_TOOL_CALLS = tuple[ToolCall, ...]


def dumps(value: Any) -> str:
    """JSON text of a JSON-compatible value (orjson; what every JSON column holds)."""
    return orjson.dumps(value).decode()


def _text(value: str, pg: bool) -> str:
    # PostgreSQL text cannot hold NUL; it becomes U+FFFD there (SQLite stores it as is).
    return value.replace("\x00", "\ufffd") if pg and "\x00" in value else value


def _opt_text(value: str | None, pg: bool) -> str | None:
    return None if value is None else _text(value, pg)


def agent_row(agent: Agent, *, pg: bool) -> dict[str, Any]:
    """The `agents` row of a new agent: empty context, no messages, edited at creation."""
    return {
        "id": agent.id,
        "name": agent.name,
        "tenant": agent.tenant,
        "is_template": agent.is_template,
        "model": agent.model,
        "system": _text(agent.system, pg),
        "workflow": agent.workflow,
        "tools": dumps(list(agent.tools)),
        "params": dumps(dict(agent.params)),
        "version": agent.version,
        "in_context": "[]",
        "message_count": 0,
        "last_edit_at": agent.created_at,
        "created_at": agent.created_at,
    }


def agent_from_row(row: Any, *, version: int | None = None) -> Agent:
    """The Agent of an `agents` row (optionally at another `version`)."""
    return Agent(
        id=row.id,
        name=row.name,
        tenant=row.tenant,
        is_template=bool(row.is_template),  # sqlite3 reads a BOOLEAN column as 0 or 1
        model=row.model,
        system=row.system,
        workflow=row.workflow,
        tools=tuple(orjson.loads(row.tools)),
        params=orjson.loads(row.params),
        version=row.version if version is None else version,
        created_at=row.created_at,
    )


def block_row(agent_id: str, block: Block, *, pg: bool) -> dict[str, Any]:
    """The `blocks` row of a block."""
    return {
        "agent_id": agent_id,
        "label": block.label,
        "value": _text(block.value, pg),
        "limit": block.limit,
        "read_only": block.read_only,
        "description": _text(block.description, pg),
    }


def block_from_row(row: Any) -> Block:
    """The Block of a `blocks` row."""
    return Block(
        label=row.label,
        value=row.value,
        limit=row.limit,
        read_only=bool(row.read_only),  # sqlite3 reads a BOOLEAN column as 0 or 1
        description=row.description,
    )


def message_row(agent_id: str, message: Message, *, pg: bool) -> dict[str, Any]:
    """The `messages` row of a message (`pos` is assigned by the database)."""
    calls = message.tool_calls
    return {
        "id": message.id,
        "agent_id": agent_id,
        "run_id": message.run_id,
        "step": message.step,
        "role": message.role,
        "content": _opt_text(message.content, pg),
        "tool_calls": dumps(converter.unstructure(calls, _TOOL_CALLS)) if calls else None,
        "tool_call_id": message.tool_call_id,
        "name": _opt_text(message.name, pg),
        "incomplete": message.incomplete,
        "created_at": message.created_at,
    }


def message_from_row(row: Any) -> Message:
    """The Message of a `messages` row."""
    calls = row.tool_calls
    return Message(
        id=row.id,
        role=cast(Role, row.role),
        content=row.content,
        tool_calls=converter.structure(orjson.loads(calls), _TOOL_CALLS) if calls else (),
        tool_call_id=row.tool_call_id,
        name=row.name,
        run_id=row.run_id,
        step=row.step,
        incomplete=bool(row.incomplete),
        created_at=row.created_at,
    )


def in_context_order(ids: Sequence[str], rows: Sequence[Any]) -> tuple[Message, ...]:
    """The messages of `rows` in the order of `ids` (ids with no stored message are skipped)."""
    by_id = {row.id: row for row in rows}
    return tuple(message_from_row(by_id[i]) for i in ids if i in by_id)


def context_from_rows(
    row: Any, ids: Sequence[str], blocks: Iterable[Any], messages: Iterable[Any]
) -> AgentContext:
    """The AgentContext of an agent row, its block rows and the rows of its listed messages
    (`ids`, in order; rows of other agents' messages are dropped here)."""
    own = [m for m in messages if m.agent_id == row.id]
    return AgentContext(
        agent=agent_from_row(row),
        blocks=tuple(block_from_row(b) for b in blocks),
        messages=in_context_order(ids, own),
        total_messages=row.message_count,
        last_edit_at=row.last_edit_at,
    )


def run_row(record: RunRecord) -> dict[str, Any]:
    """The `runs` columns of a record (all but `pos`)."""
    return {
        "id": record.id,
        "workflow": record.workflow,
        "key": record.key,
        "status": record.status,
        "state": record.state,
        "seq": record.seq,
        "epoch": record.epoch,
        "record": dumps(converter.unstructure(record, RunRecord)),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def run_from_row(record_json: str, epoch: int) -> RunRecord:
    """The record of a `runs` row; the `epoch` column wins (`claim` bumps only the column)."""
    record = converter.structure(orjson.loads(record_json), RunRecord)
    return record if record.epoch == epoch else attrs.evolve(record, epoch=epoch)
