"""The Alembic revisions build exactly the schema of tables.py, and stay off the hot path."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from loopwright.adapters.storage._db import Database, Mode
from loopwright.adapters.storage._migrate import MIGRATIONS, alembic_config, head_revision
from loopwright.adapters.storage.sql import SqlStore, normalize_url
from loopwright.adapters.storage.tables import HEAD_REVISION, metadata, stored_revision
from loopwright.schemas import Agent, Block, Message
from loopwright.workflows.agent.errors import AgentExistsError
from tests.pg import postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL of an empty database: a SQLite file or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    async with postgres_schema() as pg:
        yield pg


def test_head_revision_is_the_newest_script() -> None:
    assert head_revision() == HEAD_REVISION


async def test_the_migrated_schema_is_the_schema_of_tables_py(url: str) -> None:
    def differences(conn: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with SqlStore(url) as store:
        assert await store._db.run(differences, Mode.READ) == []
        assert await store._db.run(stored_revision, Mode.READ) == HEAD_REVISION


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def test_the_command_line_migrates_and_an_up_to_date_open_skips_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    ini = str(MIGRATIONS / "alembic.ini")
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", ini, "-x", f"url={url}", "upgrade", "head"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    opened = _python(
        "import asyncio, sys\n"
        "from loopwright.adapters.storage.sql import open_store\n"
        "async def main():\n"
        f"    store = await open_store({url!r})\n"
        "    await store.aclose()\n"
        "asyncio.run(main())\n"
        "print('alembic' in sys.modules)\n"
    )
    assert opened == "False"


async def test_an_empty_database_is_created_at_the_head(url: str) -> None:
    async with SqlStore(url) as store:
        await store.create_agent(Agent(id="a", name="a"))
        assert await store._db.run(stored_revision, Mode.READ) == HEAD_REVISION


# Rows as the code of revision 0001 wrote them.
_ROWS_0001: dict[str, dict[str, Any]] = {
    "agents": {
        "id": "agent-1",
        "name": "ann",
        "model": "m",
        "system": "You are Ann.",
        "workflow": "low_latency_agent",
        "tools": '["tools.clock"]',
        "params": '{"max_steps": 3}',
        "version": 2,
        "in_context": '["m1", "m2"]',
        "message_count": 2,
        "last_edit_at": 5.0,
        "created_at": 1.0,
    },
    "blocks": {
        "agent_id": "agent-1",
        "label": "human",
        "value": "Bob",
        "limit": 100,
        "read_only": False,
        "description": "",
    },
}
_MESSAGE_0001 = {"agent_id": "agent-1", "step": 0, "role": "user", "incomplete": False}


def _database_at_0001(conn: Connection, schema: str | None) -> None:
    if schema is not None:  # the store's PostgreSQL schema, as `ensure_schema` makes it
        quoted = conn.dialect.identifier_preparer.quote_identifier(schema)
        conn.exec_driver_sql(f"CREATE SCHEMA {quoted}")
    command.upgrade(alembic_config(conn), "0001")
    for name, row in [*_ROWS_0001.items()] + [
        ("messages", {**_MESSAGE_0001, "id": f"m{n}", "created_at": float(n)}) for n in (1, 2)
    ]:
        table = sa.table(name, *(sa.column(c) for c in row))
        conn.execute(table.insert().values(row))


async def _make_0001(url: str) -> None:
    parsed, schema = normalize_url(url)
    database = Database(parsed, schema=schema)
    try:
        await database.run(lambda conn: _database_at_0001(conn, schema), Mode.SCHEMA)
    finally:
        await database.dispose()


async def _check_upgraded(store: SqlStore) -> None:
    assert await store._db.run(stored_revision, Mode.READ) == HEAD_REVISION
    ann = Agent(
        id="agent-1",
        name="ann",
        model="m",
        system="You are Ann.",
        tools=("tools.clock",),
        params={"max_steps": 3},
        version=2,
        created_at=1.0,
    )
    assert await store.get_agent("ann", tenant="") == ann
    # SQLite rebuilds `agents`: dropping the old table must not cascade to its rows.
    context = await store.load_context("agent-1")
    assert context.blocks == (Block(label="human", value="Bob", limit=100),)
    assert [m.id for m in context.messages] == ["m1", "m2"]
    assert context.messages[0] == Message(id="m1", role="user", created_at=1.0)
    assert (context.total_messages, context.last_edit_at) == (2, 5.0)
    # Names are unique per tenant from now on.
    await store.create_agent(Agent(id="agent-2", name="ann", tenant="t"))
    with pytest.raises(AgentExistsError):
        await store.create_agent(Agent(id="agent-3", name="ann"))


async def test_a_database_at_0001_upgrades_in_place(url: str) -> None:
    await _make_0001(url)
    async with SqlStore(url) as store:
        await _check_upgraded(store)


async def test_the_command_line_upgrades_a_0001_file_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    await _make_0001(url)
    ini = str(MIGRATIONS / "alembic.ini")
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "alembic", "-c", ini, "-x", f"url={url}", "upgrade", "head"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()
    async with SqlStore(url) as store:
        await _check_upgraded(store)


async def test_a_sqlite_schema_change_that_breaks_a_foreign_key_commits_nothing(
    tmp_path: Path,
) -> None:
    def dangling(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
        conn.exec_driver_sql(
            'INSERT INTO blocks (agent_id, label, value, "limit", read_only, description) '
            "VALUES ('nobody', 'b', '', 1, 0, '')"
        )

    async with SqlStore(f"sqlite:///{tmp_path / 'store.db'}") as store:
        with pytest.raises(sqlite3.IntegrityError, match="dangling foreign keys"):
            await store._db.run(dangling, Mode.SCHEMA)
        tables = "SELECT name FROM sqlite_master WHERE name = 'scratch'"
        assert await store._db.run(lambda c: c.exec_driver_sql(tables).all(), Mode.READ) == []
