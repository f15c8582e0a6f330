"""The `AgentStore` contract, run on every implementation (fixture `agent_store` in conftest.py)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopwright.engine.testing import strategies as sts
from loopwright.engine.testing.memory import ManualClock
from loopwright.schemas import Agent, Block, Message, Role, ToolCall
from loopwright.workflows.agent.errors import (
    AgentExistsError,
    AgentNotFoundError,
    VersionConflictError,
)
from loopwright.workflows.agent.ports import AgentStore

# One store serves every example of a property test: each example uses ids of its own.
_examples = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
_fresh = itertools.count()

ANN = Agent(id="agent-1", name="ann", system="You are Ann.", created_at=100.0)


def _msg(n: int, role: Role = "user", **fields: Any) -> Message:
    return Message(id=f"m{n}", role=role, content=f"text {n}", **fields)


def _ids(messages: Iterable[Message]) -> list[str]:
    return [m.id for m in messages]


async def _ann(store: AgentStore, *blocks: Block) -> Agent:
    return await store.create_agent(ANN, blocks)


async def test_create_and_get_by_name_or_id(agent_store: AgentStore) -> None:
    assert await _ann(agent_store) == ANN
    assert await agent_store.get_agent("ann") == ANN
    assert await agent_store.get_agent("agent-1") == ANN
    with pytest.raises(AgentNotFoundError) as info:
        await agent_store.get_agent("bob")
    assert info.value.name == "bob"


async def test_a_name_wins_over_an_id(agent_store: AgentStore) -> None:
    await _ann(agent_store)
    named = await agent_store.create_agent(Agent(id="agent-2", name="agent-1"))
    assert await agent_store.get_agent("agent-1") == named


async def test_a_taken_name_is_refused_and_a_known_id_is_a_no_op(agent_store: AgentStore) -> None:
    await _ann(agent_store, Block(label="persona", value="v1"))
    with pytest.raises(AgentExistsError):
        await agent_store.create_agent(Agent(id="agent-2", name="ann"))
    again = await agent_store.create_agent(attrs.evolve(ANN, model="other"), [Block(label="x")])
    assert again == ANN
    context = await agent_store.load_context("agent-1")
    assert context.blocks == (Block(label="persona", value="v1"),)
    assert await agent_store.list_agents() == [ANN]


async def test_list_agents_by_name(agent_store: AgentStore) -> None:
    for n, name in enumerate(["carol", "ann", "bob"]):
        await agent_store.create_agent(Agent(id=f"id-{n}", name=name))
    assert [a.name for a in await agent_store.list_agents()] == ["ann", "bob", "carol"]


async def test_names_are_unique_per_tenant(agent_store: AgentStore) -> None:
    ann_a = await agent_store.create_agent(attrs.evolve(ANN, id="a-1", tenant="a"))
    ann_b = await agent_store.create_agent(attrs.evolve(ANN, id="b-1", tenant="b"))
    with pytest.raises(AgentExistsError):
        await agent_store.create_agent(attrs.evolve(ANN, id="a-2", tenant="a"))
    assert await agent_store.get_agent("ann", tenant="a") == ann_a
    assert await agent_store.get_agent("ann", tenant="b") == ann_b
    assert await agent_store.get_agent("b-1", tenant="b") == ann_b
    # Deleting frees the name in its own tenant only.
    await agent_store.delete_agent("a-1")
    with pytest.raises(AgentNotFoundError):
        await agent_store.get_agent("ann", tenant="a")
    again = await agent_store.create_agent(attrs.evolve(ANN, id="a-3", tenant="a"))
    assert await agent_store.get_agent("ann", tenant="a") == again
    assert await agent_store.get_agent("ann", tenant="b") == ann_b


async def test_a_tenant_sees_none_of_another_tenants_agents(agent_store: AgentStore) -> None:
    await agent_store.create_agent(attrs.evolve(ANN, tenant="a"))
    for key in ("ann", "agent-1"):
        with pytest.raises(AgentNotFoundError) as info:
            await agent_store.get_agent(key, tenant="b")
        assert info.value.name == key
        with pytest.raises(AgentNotFoundError):
            await agent_store.get_agent(key, tenant="")
    assert await agent_store.list_agents(tenant="b") == []


async def test_within_a_tenant_its_own_id_wins_over_a_foreign_name(
    agent_store: AgentStore,
) -> None:
    mine = await agent_store.create_agent(Agent(id="x", name="mine", tenant="a"))
    await agent_store.create_agent(Agent(id="y", name="x", tenant="b"))
    assert await agent_store.get_agent("x", tenant="a") == mine
    # ... and within a tenant a name still wins over an id, as without tenants.
    named = await agent_store.create_agent(Agent(id="z", name="x", tenant="a"))
    assert await agent_store.get_agent("x", tenant="a") == named


async def test_without_a_tenant_a_shared_name_resolves_to_the_first_tenant(
    agent_store: AgentStore,
) -> None:
    # Code-point order of the tenants: the default tenant "" comes first.
    for tenant in ("b", "", "a"):
        await agent_store.create_agent(Agent(id=f"id-{tenant}", name="support", tenant=tenant))
    assert (await agent_store.get_agent("support")).tenant == ""
    await agent_store.delete_agent("id-")
    assert (await agent_store.get_agent("support")).tenant == "a"
    assert (await agent_store.get_agent("id-b")).tenant == "b"


async def test_list_agents_of_one_tenant_or_all(agent_store: AgentStore) -> None:
    rows = [("carol", "a"), ("bob", "b"), ("ann", "b"), ("bob", "a"), ("bob", "")]
    for n, (name, tenant) in enumerate(rows):
        await agent_store.create_agent(Agent(id=f"id-{n}", name=name, tenant=tenant))
    every = [(a.name, a.tenant) for a in await agent_store.list_agents()]
    assert every == [("ann", "b"), ("bob", ""), ("bob", "a"), ("bob", "b"), ("carol", "a")]
    of_a = [(a.name, a.tenant) for a in await agent_store.list_agents(tenant="a")]
    assert of_a == [("bob", "a"), ("carol", "a")]
    assert [a.id for a in await agent_store.list_agents(tenant="")] == ["id-4"]


async def test_put_block_replaces_by_label_and_bumps_the_version(
    agent_store: AgentStore, clock: ManualClock
) -> None:
    await _ann(agent_store, Block(label="persona", value="p"), Block(label="human", value="h"))
    clock.advance(5)
    agent = await agent_store.put_block("agent-1", Block(label="human", value="h2", limit=10))
    assert agent.version == ANN.version + 1
    agent = await agent_store.put_block("agent-1", Block(label="about", read_only=True))
    assert agent.version == ANN.version + 2
    context = await agent_store.load_context("agent-1")
    assert context.agent == agent
    assert context.last_edit_at == clock.now()
    assert context.blocks == (
        Block(label="about", read_only=True),
        Block(label="human", value="h2", limit=10),
        Block(label="persona", value="p"),
    )


async def test_blocks_and_agents_sort_by_code_point(agent_store: AgentStore) -> None:
    labels = ["é", "a", "B", "z", "_"]
    await _ann(agent_store, *(Block(label=label) for label in labels))
    for n, name in enumerate(labels):
        await agent_store.create_agent(Agent(id=f"id-{n}", name=name))
    context = await agent_store.load_context("agent-1")
    assert [b.label for b in context.blocks] == sorted(labels)
    assert [a.name for a in await agent_store.list_agents()] == sorted([*labels, "ann"])


async def test_a_new_agent_was_last_edited_at_creation(agent_store: AgentStore) -> None:
    await _ann(agent_store)
    context = await agent_store.load_context("agent-1")
    assert (context.last_edit_at, context.messages, context.total_messages) == (100.0, (), 0)


async def test_unknown_agent_raises_everywhere(agent_store: AgentStore) -> None:
    calls = [
        agent_store.delete_agent("x"),
        agent_store.put_block("x", Block(label="b")),
        agent_store.append_messages("x", [_msg(1)]),
        agent_store.set_context("x", [], expected_version=0),
        agent_store.load_context("x"),
        agent_store.list_messages("x"),
        agent_store.find_messages("x", ids=["m1"]),
        agent_store.discard_messages("x", ["m1"]),
    ]
    for call in calls:
        with pytest.raises(AgentNotFoundError):
            await call


async def test_append_keeps_order_and_bumps_the_version_once(agent_store: AgentStore) -> None:
    await _ann(agent_store)
    calls = (ToolCall(id="c1", name="lookup", arguments='{"q": 1}'),)
    step = [_msg(1), _msg(2, "assistant", tool_calls=calls, run_id="run-1", step=1)]
    agent = await agent_store.append_messages("agent-1", step)
    assert agent == attrs.evolve(ANN, version=1)
    agent = await agent_store.append_messages("agent-1", [_msg(3, "tool", tool_call_id="c1")])
    assert agent.version == 2
    context = await agent_store.load_context("agent-1")
    assert context.messages == (*step, _msg(3, "tool", tool_call_id="c1"))
    assert (context.agent, context.total_messages) == (agent, 3)
    assert _ids(await agent_store.list_messages("agent-1")) == ["m1", "m2", "m3"]


async def test_append_is_idempotent_by_id(agent_store: AgentStore) -> None:
    await _ann(agent_store)
    first = await agent_store.append_messages("agent-1", [_msg(1), _msg(2)])
    replay = await agent_store.append_messages("agent-1", [_msg(1), _msg(2)])
    assert replay == first
    agent = await agent_store.append_messages("agent-1", [_msg(2), _msg(3), _msg(3)])
    assert agent.version == first.version + 1
    assert _ids(await agent_store.list_messages("agent-1")) == ["m1", "m2", "m3"]
    assert _ids((await agent_store.load_context("agent-1")).messages) == ["m1", "m2", "m3"]


async def test_a_replay_after_eviction_does_not_bring_messages_back(
    agent_store: AgentStore,
) -> None:
    await _ann(agent_store)
    agent = await agent_store.append_messages("agent-1", [_msg(1), _msg(2)])
    await agent_store.set_context("agent-1", ["m2"], expected_version=agent.version)
    await agent_store.append_messages("agent-1", [_msg(1), _msg(2)])
    assert _ids((await agent_store.load_context("agent-1")).messages) == ["m2"]


async def test_message_ids_are_unique_across_agents(agent_store: AgentStore) -> None:
    await _ann(agent_store)
    await agent_store.create_agent(Agent(id="agent-2", name="bob"))
    await agent_store.append_messages("agent-1", [_msg(1)])
    bob = await agent_store.append_messages("agent-2", [_msg(1)])
    assert bob.version == 0
    assert await agent_store.list_messages("agent-2") == []


async def test_out_of_context_messages_are_stored_only(agent_store: AgentStore) -> None:
    await _ann(agent_store)
    await agent_store.append_messages("agent-1", [_msg(1)])
    await agent_store.append_messages("agent-1", [_msg(2)], in_context=False)
    context = await agent_store.load_context("agent-1")
    assert (_ids(context.messages), context.total_messages) == (["m1"], 2)
    assert _ids(await agent_store.list_messages("agent-1")) == ["m1", "m2"]


async def test_set_context_is_compare_and_set(agent_store: AgentStore) -> None:
    await _ann(agent_store)
    agent = await agent_store.append_messages("agent-1", [_msg(n) for n in range(5)])
    moved = await agent_store.set_context("agent-1", ["m3", "m1", "m4"], expected_version=1)
    assert moved.version == agent.version + 1
    with pytest.raises(VersionConflictError) as info:
        await agent_store.set_context("agent-1", ["m0"], expected_version=agent.version)
    assert (info.value.expected, info.value.actual) == (1, 2)
    context = await agent_store.load_context("agent-1")
    assert _ids(context.messages) == ["m3", "m1", "m4"]
    assert (context.agent, context.total_messages) == (moved, 5)
    assert len(await agent_store.list_messages("agent-1")) == 5


async def test_the_context_holds_only_this_agents_stored_messages(agent_store: AgentStore) -> None:
    await _ann(agent_store)
    await agent_store.create_agent(Agent(id="agent-2", name="bob"))
    await agent_store.append_messages("agent-2", [_msg(9)])
    agent = await agent_store.append_messages("agent-1", [_msg(1)])
    await agent_store.set_context("agent-1", ["m9", "m1", "gone"], expected_version=agent.version)
    assert _ids((await agent_store.load_context("agent-1")).messages) == ["m1"]


async def test_list_messages_pages_backwards(agent_store: AgentStore) -> None:
    await _ann(agent_store)
    await agent_store.append_messages("agent-1", [_msg(n) for n in range(6)])
    assert _ids(await agent_store.list_messages("agent-1", limit=2)) == ["m4", "m5"]
    page = await agent_store.list_messages("agent-1", limit=2, before="m4")
    assert _ids(page) == ["m2", "m3"]
    assert _ids(await agent_store.list_messages("agent-1", before="m2")) == ["m0", "m1"]
    assert await agent_store.list_messages("agent-1", before="m0") == []
    assert await agent_store.list_messages("agent-1", limit=0) == []
    assert await agent_store.list_messages("agent-1", before="unknown") == []


async def test_delete_cascades_to_blocks_and_messages(agent_store: AgentStore) -> None:
    await _ann(agent_store, Block(label="persona", value="p"))
    await agent_store.create_agent(Agent(id="agent-2", name="bob"))
    await agent_store.append_messages("agent-1", [_msg(1), _msg(2)])
    await agent_store.append_messages("agent-2", [_msg(3)])
    await agent_store.delete_agent("agent-1")
    with pytest.raises(AgentNotFoundError):
        await agent_store.get_agent("ann")
    assert [a.id for a in await agent_store.list_agents()] == ["agent-2"]
    assert _ids(await agent_store.list_messages("agent-2")) == ["m3"]
    # Nothing of the deleted agent is left behind: its name and message ids are free again.
    await agent_store.create_agent(attrs.evolve(ANN, id="agent-3"))
    await agent_store.append_messages("agent-3", [_msg(1)])
    context = await agent_store.load_context("agent-3")
    assert (_ids(context.messages), context.blocks) == (["m1"], ())


async def test_concurrent_appends_lose_nothing(agent_store: AgentStore) -> None:
    await _ann(agent_store)
    steps = [[_msg(2 * n), _msg(2 * n + 1, "assistant")] for n in range(40)]
    await asyncio.gather(*(agent_store.append_messages("agent-1", s) for s in steps))
    log = _ids(await agent_store.list_messages("agent-1"))
    context = await agent_store.load_context("agent-1")
    assert sorted(log) == sorted(m.id for s in steps for m in s)
    assert _ids(context.messages) == log  # the context follows the log's order
    assert [int(i[1:]) // 2 for i in log[::2]] == [int(i[1:]) // 2 for i in log[1::2]]
    assert context.agent.version == len(steps)


@_examples
@given(
    agent=sts.agents(),
    blocks=st.lists(sts.blocks, max_size=3, unique_by=lambda b: b.label),
    steps=st.lists(st.lists(sts.messages(), min_size=1, max_size=3), max_size=3),
    tenant=sts.texts(max_size=12),
    is_template=st.booleans(),
)
async def test_every_field_round_trips(
    agent_store: AgentStore,
    agent: Agent,
    blocks: list[Block],
    steps: list[list[Message]],
    tenant: str,
    is_template: bool,
) -> None:
    n = next(_fresh)
    # sts.agents() leaves tenant and is_template at their defaults: drawn here.
    agent = attrs.evolve(
        agent,
        id=f"{agent.id}-{n}",
        name=f"{agent.name}-{n}",
        tenant=f"{tenant}-{n}",
        is_template=is_template,
    )
    steps = [
        [attrs.evolve(m, id=f"{m.id}-{n}-{i}-{j}") for j, m in enumerate(s)]
        for i, s in enumerate(steps)
    ]
    assert await agent_store.create_agent(agent, blocks) == agent
    assert await agent_store.get_agent(agent.name) == agent
    assert await agent_store.get_agent(agent.id, tenant=agent.tenant) == agent
    assert await agent_store.list_agents(tenant=agent.tenant) == [agent]
    for step in steps:
        await agent_store.append_messages(agent.id, step)
    context = await agent_store.load_context(agent.id)
    stored = tuple(m for s in steps for m in s)
    assert context.agent == attrs.evolve(agent, version=agent.version + len(steps))
    assert context.blocks == tuple(sorted(blocks, key=lambda b: b.label))
    assert context.messages == stored
    assert tuple(await agent_store.list_messages(agent.id)) == stored
