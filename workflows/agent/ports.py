"""Ports of the agent loop: agent storage, agent leases and tools. Adapters implement them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from loopwright.schemas import Agent, AgentContext, Block, Message, ToolOutput, ToolSpec


class AgentStore(Protocol):
    """Agents, memory blocks and the message log.

    Contract (tests/contracts/agent_store.py runs it on every implementation):
    - Message writes are idempotent by id: a message whose id is stored is skipped, so a
      replayed step never duplicates data. Order is insertion order.
    - `append_messages` is one transaction: all new messages and the in-context update, or none.
    - Every change of blocks or of the in-context list bumps `Agent.version`.
    - The log only grows: messages leave the context, never the store.
    """

    async def create_agent(self, agent: Agent, blocks: Sequence[Block] = ()) -> Agent:
        """Insert an agent and its blocks. Raises: AgentExistsError (name taken)."""
        ...

    async def get_agent(self, name_or_id: str, *, tenant: str | None = None) -> Agent:
        """Look up by name, then id; with `tenant`, only that tenant's agents are seen (another
        tenant's agent is not found). Raises: AgentNotFoundError."""
        ...

    async def list_agents(self, *, tenant: str | None = None) -> Sequence[Agent]:
        """All agents (of `tenant` when given), by name."""
        ...

    async def delete_agent(self, agent_id: str) -> None:
        """Delete an agent with its blocks and messages. Raises: AgentNotFoundError."""
        ...

    async def put_block(self, agent_id: str, block: Block) -> Agent:
        """Insert or replace a block by label; returns the agent at its new version."""
        ...

    async def append_messages(
        self, agent_id: str, messages: Sequence[Message], *, in_context: bool = True
    ) -> Agent:
        """Store messages (skipping ids already stored) and, when `in_context`, append their
        ids to the in-context list; returns the agent at its new version."""
        ...

    async def set_context(
        self, agent_id: str, message_ids: Sequence[str], *, expected_version: int
    ) -> Agent:
        """Replace the in-context list (summarisation) if the agent is still at
        `expected_version`. Raises: VersionConflictError."""
        ...

    async def load_context(self, agent_id: str) -> AgentContext:
        """The agent, its blocks and its in-context messages, in order."""
        ...

    async def find_messages(
        self, agent_id: str, *, ids: Sequence[str] = (), run_id: str | None = None
    ) -> Sequence[Message]:
        """Stored messages with one of `ids`, or produced by `run_id` (either filter, or both
        ORed), in log order. Unknown ids are simply absent."""
        ...

    async def discard_messages(self, agent_id: str, ids: Sequence[str]) -> Agent:
        """Remove messages that nobody has seen (a turn aborted before its first token) from
        the log and the context; returns the agent at its new version. Only the newest messages
        of the log may go: an id followed by a message not in `ids` raises
        `DiscardRefusedError` (the log only loses its unheard tail, never its middle). Ids not
        stored are ignored."""
        ...

    async def list_messages(
        self, agent_id: str, *, limit: int | None = None, before: str | None = None
    ) -> Sequence[Message]:
        """Stored log in insertion order; `before`/`limit` page backwards from the end."""
        ...


class AgentLeases(Protocol):
    """Durable per-agent leases: one writer per agent across every process sharing the store.

    A lease belongs to an `owner` (a token unique to one holding) until `expires_at`, a time
    of the store's clock; a holder that dies stops renewing, so its lease frees itself.

    Contract (tests/contracts/agent_leases.py runs it on every implementation):
    - `acquire_lease` is atomic: of concurrent callers for a free or expired lease, exactly
      one gets it. An owner that holds the lease gets it again (extended): a retry after an
      ambiguous failure is safe.
    - `renew_lease` extends the lease only while `owner` still holds it, even past its expiry
      when nobody took it over.
    - `release_lease` frees the lease only if `owner` holds it (a late release after a
      take-over changes nothing).
    """

    async def acquire_lease(self, agent_id: str, owner: str, ttl_s: float) -> bool:
        """Take the agent's lease for `ttl_s` seconds if it is free, expired or `owner`'s.

        Returns: whether `owner` holds the lease now."""
        ...

    async def renew_lease(self, agent_id: str, owner: str, ttl_s: float) -> bool:
        """Extend `owner`'s lease to `ttl_s` seconds from now.

        Returns: False when `owner` no longer holds it (another owner took it over)."""
        ...

    async def release_lease(self, agent_id: str, owner: str) -> None:
        """Free the lease if `owner` holds it."""
        ...


class Toolbox(Protocol):
    """The tools of one agent."""

    def specs(self) -> Sequence[ToolSpec]:
        """Tools as offered to the model (before the loop's schema transforms)."""
        ...

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolOutput:
        """Run one call. Never raises for tool problems: unknown tool, arguments that do not
        match the schema, an exception, a timeout or an unserialisable result all become
        `ToolOutput(status="error", content=<what the model should know>)`."""
        ...
