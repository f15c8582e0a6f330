"""The Alembic revisions build exactly the schema of tables.py, and stay off the hot path."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from loopwright.adapters.storage._db import Mode
from loopwright.adapters.storage._migrate import MIGRATIONS, head_revision
from loopwright.adapters.storage.sql import SqlStore
from loopwright.adapters.storage.tables import HEAD_REVISION, metadata, stored_revision
from loopwright.schemas import Agent
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
