"""`MemoryAgentStore`: the `AgentStore` and `AgentLeases` ports in dicts; the test fake and a
usable default (its leases exclude writers of one process only).

Same contract as the SQL store (tests/contracts/agent_store.py and agent_leases.py run both).
Every method runs without awaiting, so each is atomic with respect to other coroutines.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from loopwright.engine.ports import Clock
from loopwright.engine.testing.memory import SystemClock
from loopwright.schemas import Agent, AgentContext, Block, Message

from .errors import (
    AgentExistsError,
    AgentNotFoundError,
    DiscardRefusedError,
    VersionConflictError,
)


@attrs.define
class _Entry:
    """Everything stored for one agent."""

    agent: Agent
    blocks: dict[str, Block]
    last_edit_at: float
    log: list[Message] = attrs.Factory(list)
    index: dict[str, int] = attrs.Factory(dict)
    """Position in `log` of each message id."""
    in_context: list[str] = attrs.Factory(list)


class MemoryAgentStore:
    """An `AgentStore` and `AgentLeases` in memory (lost when the process ends)."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._entries: dict[str, _Entry] = {}
        self._names: dict[str, dict[str, str]] = {}
        """The agent id of each name, by tenant."""
        self._owners: dict[str, str] = {}
        """The agent of every stored message id (ids are unique across agents, as in SQL)."""
        self._leases: dict[str, tuple[str, float]] = {}
        """The owner of each agent's lease and when it expires (clock seconds)."""

    def _entry(self, agent_id: str) -> _Entry:
        entry = self._entries.get(agent_id)
        if entry is None:
            raise AgentNotFoundError(agent_id)
        return entry

    def _bump(self, entry: _Entry) -> Agent:
        entry.agent = attrs.evolve(entry.agent, version=entry.agent.version + 1)
        return entry.agent

    async def create_agent(self, agent: Agent, blocks: Sequence[Block] = ()) -> Agent:
        """Insert an agent and its blocks (an id already stored returns the stored agent).

        Raises: AgentExistsError (the name belongs to another agent)."""
        stored = self._entries.get(agent.id)
        if stored is not None:
            return stored.agent
        tenants = self._names.setdefault(agent.name, {})
        if agent.tenant in tenants:
            raise AgentExistsError(agent.name)
        by_label = {b.label: b for b in blocks}
        self._entries[agent.id] = _Entry(agent, by_label, last_edit_at=agent.created_at)
        tenants[agent.tenant] = agent.id
        return agent

    async def get_agent(self, name_or_id: str, *, tenant: str | None = None) -> Agent:
        """Look up by name, then id; with `tenant`, among that tenant's agents only (without,
        a name held in several tenants resolves to the first tenant by code point, `""`
        first). Raises: AgentNotFoundError."""
        tenants = self._names.get(name_or_id, {})
        if tenant is None and tenants:
            return self._entries[tenants[min(tenants)]].agent
        if tenant in tenants:
            return self._entries[tenants[tenant]].agent
        entry = self._entries.get(name_or_id)
        if entry is None or tenant not in (None, entry.agent.tenant):
            raise AgentNotFoundError(name_or_id)
        return entry.agent

    async def list_agents(self, *, tenant: str | None = None) -> Sequence[Agent]:
        """All agents (of `tenant` when given), by name, then tenant."""
        agents = (e.agent for e in self._entries.values())
        chosen = [a for a in agents if tenant in (None, a.tenant)]
        return sorted(chosen, key=lambda a: (a.name, a.tenant))

    async def delete_agent(self, agent_id: str) -> None:
        """Delete an agent with its blocks and messages. Raises: AgentNotFoundError."""
        entry = self._entry(agent_id)
        tenants = self._names[entry.agent.name]
        del self._entries[agent_id], tenants[entry.agent.tenant]
        if not tenants:
            del self._names[entry.agent.name]
        for message in entry.log:
            del self._owners[message.id]

    async def put_block(self, agent_id: str, block: Block) -> Agent:
        """Insert or replace a block by label; returns the agent at its new version."""
        entry = self._entry(agent_id)
        entry.blocks[block.label] = block
        entry.last_edit_at = self._clock.now()
        return self._bump(entry)

    async def append_messages(
        self, agent_id: str, messages: Sequence[Message], *, in_context: bool = True
    ) -> Agent:
        """Store new messages and, when `in_context`, append their ids to the context; returns
        the agent, at a new version if anything was stored."""
        entry = self._entry(agent_id)
        added = list({m.id: m for m in messages if m.id not in self._owners}.values())
        if not added:
            return entry.agent
        for message in added:
            self._owners[message.id] = agent_id
            entry.index[message.id] = len(entry.log)
            entry.log.append(message)
        if in_context:
            entry.in_context.extend(m.id for m in added)
        return self._bump(entry)

    async def set_context(
        self, agent_id: str, message_ids: Sequence[str], *, expected_version: int
    ) -> Agent:
        """Replace the in-context list if the agent is still at `expected_version`.

        Raises: VersionConflictError, AgentNotFoundError."""
        entry = self._entry(agent_id)
        if entry.agent.version != expected_version:
            raise VersionConflictError(agent_id, expected_version, entry.agent.version)
        entry.in_context = list(message_ids)
        return self._bump(entry)

    async def load_context(self, agent_id: str) -> AgentContext:
        """The agent, its blocks (by label) and its in-context messages, in order."""
        entry = self._entry(agent_id)
        log, index = entry.log, entry.index
        return AgentContext(
            agent=entry.agent,
            blocks=tuple(entry.blocks[label] for label in sorted(entry.blocks)),
            messages=tuple(log[index[i]] for i in entry.in_context if i in index),
            total_messages=len(entry.log),
            last_edit_at=entry.last_edit_at,
        )

    async def find_messages(
        self, agent_id: str, *, ids: Sequence[str] = (), run_id: str | None = None
    ) -> Sequence[Message]:
        """Stored messages with one of `ids`, or produced by `run_id` (either filter, or both
        ORed), in log order. Raises: AgentNotFoundError."""
        entry = self._entry(agent_id)
        wanted = set(ids)
        if run_id is None:  # by the index, not a walk of the log
            positions = sorted(entry.index[i] for i in wanted & entry.index.keys())
            return [entry.log[p] for p in positions]
        return [m for m in entry.log if m.id in wanted or m.run_id == run_id]

    async def discard_messages(self, agent_id: str, ids: Sequence[str]) -> Agent:
        """Remove the newest messages of the log, listed in `ids`, from the log and the
        context; returns the agent, at a new version if anything was removed.

        Raises: DiscardRefusedError (an id of `ids` is followed by a message not in `ids`;
        nothing changed), AgentNotFoundError."""
        entry = self._entry(agent_id)
        found = sorted({entry.index[i] for i in ids if i in entry.index})
        if not found:
            return entry.agent
        first = found[0]
        if len(found) != len(entry.log) - first:
            raise DiscardRefusedError(agent_id, entry.log[first].id)
        gone = {m.id for m in entry.log[first:]}
        del entry.log[first:]
        for message_id in gone:
            del entry.index[message_id], self._owners[message_id]
        entry.in_context = [i for i in entry.in_context if i not in gone]
        return self._bump(entry)

    async def list_messages(
        self, agent_id: str, *, limit: int | None = None, before: str | None = None
    ) -> Sequence[Message]:
        """Stored log in insertion order; `before`/`limit` page backwards from the end (an id
        `before` that is not in this agent's log gives an empty page)."""
        entry = self._entry(agent_id)
        log = entry.log
        if before is not None:
            cut = entry.index.get(before)
            log = [] if cut is None else log[:cut]
        if limit is not None:
            log = log[len(log) - limit :] if limit > 0 else []
        return list(log)

    async def acquire_lease(self, agent_id: str, owner: str, ttl_s: float) -> bool:
        """Take the agent's lease if it is free, expired or `owner`'s (see `AgentLeases`)."""
        now = self._clock.now()
        held = self._leases.get(agent_id)
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self._leases[agent_id] = (owner, now + ttl_s)
        return True

    async def renew_lease(self, agent_id: str, owner: str, ttl_s: float) -> bool:
        """Extend `owner`'s lease; False when another owner holds it, or nobody does."""
        held = self._leases.get(agent_id)
        if held is None or held[0] != owner:
            return False
        self._leases[agent_id] = (owner, self._clock.now() + ttl_s)
        return True

    async def release_lease(self, agent_id: str, owner: str) -> None:
        """Free the lease if `owner` holds it."""
        held = self._leases.get(agent_id)
        if held is not None and held[0] == owner:
            del self._leases[agent_id]
