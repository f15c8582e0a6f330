"""Every store implementation behind one fixture, so each contract test runs on all of them.

`run_store.py`, `agent_store.py` and `agent_store_log.py` hold the contract suites (named as
the ports' docstrings name them); the hook collects them although they lack the `test_` prefix.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from loopwright.adapters.storage.sql import SqlStore, open_store
from loopwright.engine.ports import RunStore
from loopwright.engine.testing.memory import ManualClock, MemoryRunStore
from loopwright.workflows.agent.memory_store import MemoryAgentStore
from loopwright.workflows.agent.ports import AgentStore
from tests.pg import postgres_schema

SUITES = {"run_store.py", "agent_store.py", "agent_store_log.py"}
KINDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    # An explicit path on the command line is collected by pytest itself.
    if file_path.name in SUITES and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture
def clock() -> ManualClock:
    """The clock every store under test reads (memory-edit times)."""
    return ManualClock()


async def _sql_store(
    kind: str, tmp_path: Path, clock: ManualClock, stack: AsyncExitStack
) -> SqlStore:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = await stack.enter_async_context(postgres_schema())
    store = await open_store(url, clock=clock)
    stack.push_async_callback(store.aclose)
    return store


@pytest.fixture(params=KINDS)
async def run_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[RunStore]:
    """A fresh `RunStore`: memory, SQLite file or PostgreSQL schema."""
    if request.param == "memory":
        yield MemoryRunStore()
        return
    async with AsyncExitStack() as stack:
        yield await _sql_store(request.param, tmp_path, clock, stack)


@pytest.fixture(params=KINDS)
async def agent_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[AgentStore]:
    """A fresh `AgentStore`: memory, SQLite file or PostgreSQL schema."""
    if request.param == "memory":
        yield MemoryAgentStore(clock=clock)
        return
    async with AsyncExitStack() as stack:
        yield await _sql_store(request.param, tmp_path, clock, stack)
