"""What the agent loop's handlers share: ports, and the per-agent context cache."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from loopwright.engine.ports import LLM
from loopwright.schemas import Agent, AgentContext, Message

from .ports import AgentStore, Toolbox
from .prompt import compile_system_prompt
from .request import to_openai
from .tool_schema import prepare_tools

_MAX_PRIMED = 1024


@attrs.frozen
class CachedContext:
    """An agent's context at one version, with its wire form built once."""

    version: int
    system: str
    context: AgentContext
    wire: tuple[dict[str, Any], ...]


class AgentServices:
    """The agent loop's injected services (`Engine(services={"agent": AgentServices(...)})`).

    The context cache keeps, per agent, the compiled system prompt and the in-context messages
    in wire form, keyed by the agent's version: the work before a request is O(new messages)
    while the version is unchanged, and one reload when something else changed the agent.
    """

    def __init__(
        self,
        *,
        store: AgentStore,
        llm: LLM,
        toolbox_for: Callable[[Agent], Toolbox],
    ) -> None:
        self.store = store
        self.llm = llm
        self._toolbox_for = toolbox_for
        self._contexts: dict[str, CachedContext] = {}
        self._toolboxes: dict[tuple[str, tuple[str, ...]], Toolbox] = {}
        self._tools: dict[tuple[str, tuple[str, ...], bool, bool], list[dict[str, Any]]] = {}
        self._names: dict[tuple[str, tuple[str, ...]], frozenset[str]] = {}
        self._once: dict[tuple[str, tuple[str, ...]], frozenset[str]] = {}
        self.input_writes: dict[str, asyncio.Task[Any]] = {}
        self._fresh: dict[str, Agent] = {}
        self._streamed: dict[str, str] = {}

    def prime(self, run_id: str, agent: Agent) -> None:
        """Hand a run the agent its caller has just read, saving rebuild_memory a query."""
        self._fresh[run_id] = agent
        if len(self._fresh) > _MAX_PRIMED:  # runs started but never iterated
            del self._fresh[next(iter(self._fresh))]

    def fresh(self, run_id: str) -> Agent | None:
        """The primed agent of a run, once."""
        return self._fresh.pop(run_id, None)

    def streamed(self, run_id: str, message_id: str) -> None:
        """Note that this process has just streamed the calls of `message_id`: none of them
        can have run yet, so execute_tools needs no look at the store for an earlier attempt."""
        self._streamed[run_id] = message_id
        if len(self._streamed) > _MAX_PRIMED:  # runs that stopped before execute_tools
            del self._streamed[next(iter(self._streamed))]

    def first_attempt(self, run_id: str, message_id: str) -> bool:
        """True once after `streamed(run_id, message_id)`: the calls' first attempt, here.

        False after a resume, in a step driven by another process (`advance`), or on a
        second attempt: an earlier attempt may have run the calls."""
        return self._streamed.pop(run_id, None) == message_id

    async def context(self, agent: Agent) -> CachedContext:
        """The agent's context, reloaded only when its version moved."""
        cached = self._contexts.get(agent.id)
        if cached is not None and cached.version == agent.version:
            return cached
        context = await self.store.load_context(agent.id)
        cached = CachedContext(
            version=context.agent.version,
            system=compile_system_prompt(context),
            context=context,
            wire=tuple(to_openai(m) for m in context.messages),
        )
        self._contexts[agent.id] = cached
        return cached

    def cached(self, agent_id: str) -> CachedContext | None:
        """The cached context, if any."""
        return self._contexts.get(agent_id)

    def appended(self, agent: Agent, messages: Sequence[Message]) -> None:
        """Record that `messages` joined the context and the agent is now at `agent.version`.

        The system prompt does not change: its counts (stored vs in context) grow together.
        The store bumps the version once per write that stored something, so any other jump
        means an outside change and the cache is dropped.
        """
        cached = self._contexts.get(agent.id)
        if cached is None:
            return
        known = {m.id for m in cached.context.messages}
        new = [m for m in messages if m.id not in known]
        if agent.version != cached.version + (1 if new else 0):
            # Something else changed the agent too (a memory edit, a summary): reload.
            self.forget(agent.id)
            return
        context = attrs.evolve(
            cached.context,
            agent=agent,
            messages=(*cached.context.messages, *new),
            total_messages=cached.context.total_messages + len(new),
        )
        self._contexts[agent.id] = CachedContext(
            version=agent.version,
            system=cached.system,
            context=context,
            wire=(*cached.wire, *(to_openai(m) for m in new)),
        )

    def forget(self, agent_id: str) -> None:
        """Drop an agent's cached context (after an outside change)."""
        self._contexts.pop(agent_id, None)

    def toolbox(self, agent: Agent) -> Toolbox:
        """The agent's toolbox, built once per tool list."""
        key = (agent.id, agent.tools)
        box = self._toolboxes.get(key)
        if box is None:
            box = self._toolboxes[key] = self._toolbox_for(agent)
        return box

    def own_tool_names(self, agent: Agent) -> frozenset[str]:
        """Names of the agent's own tools (a client tool of the same name gives way)."""
        key = (agent.id, agent.tools)
        names = self._names.get(key)
        if names is None:
            names = self._names[key] = frozenset(s.name for s in self.toolbox(agent).specs())
        return names

    def once_tools(self, agent: Agent) -> frozenset[str]:
        """Names of the agent's tools that are not idempotent: each call runs at most once,
        crashes included (tools are not idempotent unless marked)."""
        key = (agent.id, agent.tools)
        names = self._once.get(key)
        if names is None:
            specs = self.toolbox(agent).specs()
            names = self._once[key] = frozenset(s.name for s in specs if not s.idempotent)
        return names

    async def discard_turn(self, agent_id: str, run_id: str) -> None:
        """Remove every message of a turn nobody heard (its client aborted before the first
        text chunk), so the longer utterance that follows makes one user message, not two.

        Call it once the run has ended (cancelled). Waits for the turn's overlapped input
        write first. Raises: DiscardRefusedError if a later turn has stored messages since.
        """
        self._fresh.pop(run_id, None)
        write = self.input_writes.pop(run_id, None)
        if write is not None:
            # A failed write stored nothing; what did land is found below either way.
            await asyncio.gather(write, return_exceptions=True)
        try:
            found = await self.store.find_messages(agent_id, run_id=run_id)
            if found:
                await self.store.discard_messages(agent_id, [m.id for m in found])
        finally:
            # The context cache may hold the discarded messages (and always the old version).
            self.forget(agent_id)

    def tools_payload(self, agent: Agent, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """OpenAI `tools` entries for the agent, transformed once per configuration."""
        pre_exec = bool(params.get("pre_exec_msg", True))
        strict = bool(params.get("strict_tools", False))
        key = (agent.id, agent.tools, pre_exec, strict)
        tools = self._tools.get(key)
        if tools is None:
            specs = self.toolbox(agent).specs()
            tools = self._tools[key] = prepare_tools(specs, pre_exec_msg=pre_exec, strict=strict)
        return tools
