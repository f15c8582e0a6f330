"""Every store implementation behind one fixture, so each contract test runs on all of them.

`run_store.py`, `agent_store.py`, `agent_store_log.py` and `agent_leases.py` hold the contract
suites (named as the ports' docstrings name them); the hook collects them although they lack the
`test_` prefix.
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
from loopwright.workflows.agent.ports import AgentLeases, AgentStore
from tests.pg import postgres_schema

SUITES = {"run_store.py", "agent_store.py", "agent_store_log.py", "agent_leases.py"}
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


async def _sql_url(kind: str, tmp_path: Path, stack: AsyncExitStack) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return await stack.enter_async_context(postgres_schema())


async def _open(url: str, clock: ManualClock, stack: AsyncExitStack) -> SqlStore:
    store = await open_store(url, clock=clock)
    stack.push_async_callback(store.aclose)
    return store


async def _sql_store(
    kind: str, tmp_path: Path, clock: ManualClock, stack: AsyncExitStack
) -> SqlStore:
    return await _open(await _sql_url(kind, tmp_path, stack), clock, stack)


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


@pytest.fixture(params=KINDS)
async def lease_stores(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[tuple[AgentLeases, AgentLeases]]:
    """Two `AgentLeases` on one fresh database, as two worker processes hold them (memory: one
    store twice, since a memory store is one process's)."""
    if request.param == "memory":
        store = MemoryAgentStore(clock=clock)
        yield store, store
        return
    async with AsyncExitStack() as stack:
        url = await _sql_url(request.param, tmp_path, stack)
        yield await _open(url, clock, stack), await _open(url, clock, stack)
