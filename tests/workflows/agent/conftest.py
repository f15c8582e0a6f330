"""An agent loop on in-memory stores and a scripted LLM (the SQL/HTTP variants live elsewhere)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from loopwright.adapters.storage.sql import SqlStore, open_store
from loopwright.adapters.tools.python import PythonToolbox
from loopwright.engine import Compiled, Engine, Run
from loopwright.engine.testing.memory import ManualClock, MemoryRunStore, SequentialIds
from loopwright.engine.testing.scripted_llm import ScriptedLLM
from loopwright.engine.validate import load_and_validate
from loopwright.schemas import Agent, Block, Event, Message, converter
from loopwright.workflows import registry, workflow_path
from loopwright.workflows.agent.memory_store import MemoryAgentStore
from loopwright.workflows.agent.ports import AgentStore
from loopwright.workflows.agent.services import AgentServices
from loopwright.workflows.agent.turn import TurnData, TurnInput

TOOL_LOG: list[tuple[str, dict[str, Any]]] = []


def get_weather(city: str) -> dict[str, Any]:
    """Today's weather for a city.

    Args:
        city: The city name.
    """
    TOOL_LOG.append(("get_weather", {"city": city}))
    return {"city": city, "forecast": "rain"}


def explode(reason: str) -> str:
    """A tool that always fails.

    Args:
        reason: Why.
    """
    raise RuntimeError(f"exploded: {reason}")


@attrs.define
class Loop:
    """The pieces of one in-memory agent loop, with helpers to run turns."""

    engine: Engine
    agents: AgentStore
    llm: ScriptedLLM
    compiled: Compiled
    agent: Agent
    services: AgentServices

    def turn(self, text: str, **params: Any) -> Run:
        message = Message(id=self.engine.ids.new_id("msg"), role="user", content=text)
        return self.start((message,), **params)

    def start(
        self,
        messages: Sequence[Message],
        *,
        client_tools: Sequence[dict[str, Any]] = (),
        **params: Any,
    ) -> Run:
        """Start a turn with these input messages (and the client's tools); the messages get
        the run's id, as the HTTP server gives them."""
        run_id = self.engine.ids.new_id("run")
        turn = TurnInput(
            agent=self.agent.id,
            messages=tuple(attrs.evolve(m, run_id=run_id) for m in messages),
            client_tools=tuple(client_tools),
        )
        return self.engine.start(
            self.compiled,
            converter.unstructure(turn),
            params=params,
            data=TurnData(agent_id=self.agent.id),
            key=self.agent.id,
            run_id=run_id,
        )

    async def log(self) -> Sequence[Message]:
        return await self.agents.list_messages(self.agent.id)


async def collect(run: Run) -> list[Event]:
    return [event async for event in run]


async def build_loop(
    script: Any,
    *,
    agents: AgentStore,
    clock: ManualClock,
    workflow: Any = None,
    tools: Sequence[Any] = (get_weather,),
    blocks: Sequence[Block] = (Block(label="human", value="Ada"),),
    llm_timeout: float = 0.0,
) -> Loop:
    """An agent loop on `agents` (which the caller closes), its LLM playing `script`."""
    TOOL_LOG.clear()
    llm = ScriptedLLM(script, timeout=llm_timeout)
    box = PythonToolbox.from_callables(list(tools))
    services = AgentServices(store=agents, llm=llm, toolbox_for=lambda agent: box)
    engine = Engine(
        store=MemoryRunStore(), services={"agent": services}, clock=clock, ids=SequentialIds()
    )
    compiled = load_and_validate(workflow or workflow_path(), registry())
    engine.add_workflow(compiled)
    agent = await agents.create_agent(
        Agent(id="agent-1", name="ada", model="gpt-test", system="Be brief."), blocks
    )
    return Loop(engine, agents, llm, compiled, agent, services)


@pytest.fixture
async def make_loop(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """`await make_loop(script, ...)`: a loop on a MemoryAgentStore, or on a SQLite file with
    `sqlite=True` (closed after the test); other options as `build_loop`."""
    opened: list[SqlStore] = []

    async def build(script: Any, *, sqlite: bool = False, **options: Any) -> Loop:
        clock = ManualClock()
        agents: AgentStore = MemoryAgentStore(clock=clock)
        if sqlite:
            store = await open_store(f"sqlite:///{tmp_path / f'loop{len(opened)}.db'}", clock=clock)
            opened.append(store)
            agents = store
        return await build_loop(script, agents=agents, clock=clock, **options)

    yield build
    for store in opened:
        await store.aclose()
