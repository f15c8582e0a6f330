"""The `AgentStore` contract on the log: finding messages and discarding a turn nobody heard.

Run on every implementation (fixture `agent_store` in conftest.py), as `agent_store.py` is.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from loopwright.schemas import Agent, Message
from loopwright.workflows.agent.errors import DiscardRefusedError
from loopwright.workflows.agent.ports import AgentStore

from .agent_store import _ann, _examples, _fresh, _ids, _msg


def _is_subsequence(part: Sequence[str], whole: Sequence[str]) -> bool:
    rest = iter(whole)
    return all(item in rest for item in part)


async def test_find_messages_by_id_gives_log_order(agent_store: AgentStore) -> None:
    await _ann(agent_store)
    await agent_store.append_messages("agent-1", [_msg(n) for n in range(4)])
    found = await agent_store.find_messages("agent-1", ids=["m3", "unknown", "m1", "m3"])
    assert list(found) == [_msg(1), _msg(3)]
    assert list(await agent_store.find_messages("agent-1")) == []


async def test_find_messages_by_run_or_by_either(agent_store: AgentStore) -> None:
    await _ann(agent_store)
    first = [_msg(1, run_id="r1"), _msg(2, "assistant", run_id="r1")]
    second = [_msg(3, run_id="r2"), _msg(4, "assistant", run_id="r2")]
    await agent_store.append_messages("agent-1", first)
    await agent_store.append_messages("agent-1", second, in_context=False)
    assert list(await agent_store.find_messages("agent-1", run_id="r2")) == second
    both = await agent_store.find_messages("agent-1", ids=["m4", "m1"], run_id="r2")
    assert _ids(both) == ["m1", "m3", "m4"]
    assert list(await agent_store.find_messages("agent-1", run_id="r3")) == []


async def test_find_messages_sees_only_this_agents_log(agent_store: AgentStore) -> None:
    await _ann(agent_store)
    await agent_store.create_agent(Agent(id="agent-2", name="bob"))
    await agent_store.append_messages("agent-2", [_msg(9, run_id="r1")])
    await agent_store.append_messages("agent-1", [_msg(1, run_id="r1")])
    found = await agent_store.find_messages("agent-1", ids=["m9", "m1"], run_id="r1")
    assert _ids(found) == ["m1"]


async def test_discard_removes_the_tail_from_the_log_and_the_context(
    agent_store: AgentStore,
) -> None:
    await _ann(agent_store)
    await agent_store.append_messages("agent-1", [_msg(0), _msg(1)])
    agent = await agent_store.append_messages("agent-1", [_msg(2), _msg(3, "assistant")])
    discarded = await agent_store.discard_messages("agent-1", ["m3", "m2", "unknown"])
    assert discarded.version == agent.version + 1
    context = await agent_store.load_context("agent-1")
    assert (context.agent, _ids(context.messages), context.total_messages) == (
        discarded,
        ["m0", "m1"],
        2,
    )
    assert _ids(await agent_store.list_messages("agent-1")) == ["m0", "m1"]
    assert list(await agent_store.find_messages("agent-1", ids=["m2", "m3"])) == []
    # The ids are free again: a retried turn stores its messages anew.
    await agent_store.append_messages("agent-1", [_msg(2)])
    assert _ids(await agent_store.list_messages("agent-1")) == ["m0", "m1", "m2"]


async def test_discard_refuses_to_cut_the_middle_and_changes_nothing(
    agent_store: AgentStore,
) -> None:
    await _ann(agent_store)
    agent = await agent_store.append_messages("agent-1", [_msg(n) for n in range(4)])
    before = await agent_store.load_context("agent-1")
    with pytest.raises(DiscardRefusedError) as info:
        await agent_store.discard_messages("agent-1", ["m3", "m1"])
    assert (info.value.agent_id, info.value.message_id) == ("agent-1", "m1")
    assert await agent_store.load_context("agent-1") == before
    assert await agent_store.get_agent("agent-1") == agent
    assert _ids(await agent_store.list_messages("agent-1")) == ["m0", "m1", "m2", "m3"]


async def test_discarding_nothing_of_this_agent_changes_nothing(agent_store: AgentStore) -> None:
    await _ann(agent_store)
    await agent_store.create_agent(Agent(id="agent-2", name="bob"))
    await agent_store.append_messages("agent-2", [_msg(9)])
    agent = await agent_store.append_messages("agent-1", [_msg(1)])
    assert await agent_store.discard_messages("agent-1", []) == agent
    # Another agent's messages are not this agent's to discard.
    assert await agent_store.discard_messages("agent-1", ["unknown", "m9"]) == agent
    assert _ids(await agent_store.list_messages("agent-2")) == ["m9"]
    assert _ids(await agent_store.list_messages("agent-1")) == ["m1"]


async def _random_log(store: AgentStore, agent_id: str, data: st.DataObject) -> list[str]:
    """Steps of random sizes, in the context or not, then maybe an eviction; the log's ids."""
    count = 0
    for size in data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=4), label="steps"):
        step = [Message(id=f"{agent_id}-m{count + i}", role="user") for i in range(size)]
        count += size
        await store.append_messages(agent_id, step, in_context=data.draw(st.booleans()))
    log = _ids(await store.list_messages(agent_id))
    if data.draw(st.booleans(), label="evict"):  # the log is never empty
        kept = set(data.draw(st.lists(st.sampled_from(log), unique=True), label="kept"))
        version = (await store.get_agent(agent_id)).version
        await store.set_context(agent_id, [i for i in log if i in kept], expected_version=version)
    return log


def _discard_ids(log: list[str], extra: list[str], data: st.DataObject) -> list[str]:
    """Either a tail of the log or any ids of it, with ids that are not this agent's."""
    if data.draw(st.booleans(), label="a tail"):
        tail = log[len(log) - data.draw(st.integers(0, len(log)), label="tail size") :]
        chosen = data.draw(st.permutations(tail))
    else:
        chosen = data.draw(st.lists(st.sampled_from(log), min_size=1, max_size=6))
    return [*chosen, *data.draw(st.lists(st.sampled_from(extra), max_size=2), label="extra")]


@_examples
@given(data=st.data())
async def test_discard_removes_exactly_a_tail_or_nothing(
    agent_store: AgentStore, data: st.DataObject
) -> None:
    n = next(_fresh)
    agent_id, other_id = f"discard-{n}", f"other-{n}"
    for id_ in (agent_id, other_id):
        await agent_store.create_agent(Agent(id=id_, name=id_))
    await agent_store.append_messages(other_id, [Message(id=f"{other_id}-m", role="user")])
    log = await _random_log(agent_store, agent_id, data)
    ids = _discard_ids(log, [f"{other_id}-m", f"ghost-{n}"], data)
    before = await agent_store.load_context(agent_id)
    mine = [i for i in log if i in ids]
    kept = log[: len(log) - len(mine)]
    event("refused" if mine != log[len(kept) :] else "discarded" if mine else "nothing to do")
    if mine != log[len(kept) :]:  # not a tail: refused, nothing changes
        with pytest.raises(DiscardRefusedError) as info:
            await agent_store.discard_messages(agent_id, ids)
        assert (info.value.agent_id, info.value.message_id) == (agent_id, mine[0])
        assert await agent_store.load_context(agent_id) == before
        assert _ids(await agent_store.list_messages(agent_id)) == log
    else:
        agent = await agent_store.discard_messages(agent_id, ids)
        after = await agent_store.load_context(agent_id)
        assert _ids(await agent_store.list_messages(agent_id)) == kept
        assert _ids(after.messages) == [i for i in _ids(before.messages) if i not in mine]
        assert _is_subsequence(_ids(after.messages), kept)
        assert after.total_messages == len(kept)
        assert after.agent == agent
        assert agent.version == before.agent.version + (1 if mine else 0)
    assert _ids(await agent_store.list_messages(other_id)) == [f"{other_id}-m"]
