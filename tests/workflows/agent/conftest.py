"""An agent loop on in-memory stores and a scripted LLM (the SQL/HTTP variants live elsewhere)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import pytest

from loopwright.adapters.tools.python import PythonToolbox
from loopwright.engine import Compiled, Engine, Run
from loopwright.engine.testing.memory import ManualClock, MemoryRunStore, SequentialIds
from loopwright.engine.testing.scripted_llm import ScriptedLLM
from loopwright.engine.validate import load_and_validate
from loopwright.schemas import Agent, Block, Event, Message, converter
from loopwright.workflows import registry, workflow_path
from loopwright.workflows.agent.memory_store import MemoryAgentStore
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
    agents: MemoryAgentStore
    llm: ScriptedLLM
    compiled: Compiled
    agent: Agent
    services: AgentServices

    def turn(self, text: str, **params: Any) -> Run:
        message = Message(id=self.engine.ids.new_id("msg"), role="user", content=text)
        turn = TurnInput(agent=self.agent.id, messages=(message,))
        return self.engine.start(
            self.compiled,
            converter.unstructure(turn),
            params=params,
            data=TurnData(agent_id=self.agent.id),
            key=self.agent.id,
        )

    async def log(self) -> Sequence[Message]:
        return await self.agents.list_messages(self.agent.id)


async def collect(run: Run) -> list[Event]:
    return [event async for event in run]


@pytest.fixture
def make_loop() -> Callable[..., Any]:
    async def build(
        script: Any,
        *,
        workflow: Any = None,
        tools: Sequence[Any] = (get_weather,),
        blocks: Sequence[Block] = (Block(label="human", value="Ada"),),
    ) -> Loop:
        TOOL_LOG.clear()
        clock, ids = ManualClock(), SequentialIds()
        agents = MemoryAgentStore(clock=clock)
        llm = ScriptedLLM(script)
        box = PythonToolbox.from_callables(list(tools))
        services = AgentServices(store=agents, llm=llm, toolbox_for=lambda agent: box)
        engine = Engine(store=MemoryRunStore(), services={"agent": services}, clock=clock, ids=ids)
        compiled = load_and_validate(workflow or workflow_path(), registry())
        engine.add_workflow(compiled)
        agent = await agents.create_agent(
            Agent(id="agent-1", name="ada", model="gpt-test", system="Be brief."), blocks
        )
        return Loop(engine, agents, llm, compiled, agent, services)

    return build
