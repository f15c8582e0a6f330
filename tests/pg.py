"""PostgreSQL for tests: a fresh schema per test, skipped locally when the server is down.

The server is `LOOPWRIGHT_TEST_PG` (default: postgres@127.0.0.1:5432, database `test`). When
`CI=true` an unreachable server fails the test instead of skipping it: CI must prove PostgreSQL.
Use the `pg_url` fixture (tests/conftest.py), or `postgres_schema()` inside another fixture.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg  # type: ignore[import-untyped]
import pytest

PG_DSN = os.environ.get("LOOPWRIGHT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

_problem: list[str | None] = []  # the answer of the first probe, kept for the session


async def _probe() -> str | None:
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError) as err:
        return f"PostgreSQL at {PG_DSN} does not answer ({type(err).__name__}: {err})"
    await conn.close()
    return None


async def require_postgres() -> None:
    """Skip the test when the server does not answer; fail it instead when `CI=true`."""
    if not _problem:
        _problem.append(await _probe())
    problem = _problem[0]
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{problem}; CI=true requires PostgreSQL (start it in .ci/run)")
    pytest.skip(f"{problem}; set LOOPWRIGHT_TEST_PG or start the server to run this test")


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A store URL (`...?schema=NAME`) on a schema of its own, dropped on exit."""
    await require_postgres()
    name = f"test_{uuid.uuid4().hex[:16]}"
    try:
        yield f"{PG_DSN}?schema={name}"
    finally:
        conn = await asyncpg.connect(PG_DSN, timeout=10)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()
