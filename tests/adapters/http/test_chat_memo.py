"""What the chat endpoint remembers between turns (`memo.py`): it spares queries, never
changes an answer. Two `App`s on one SQLite file stand for two server processes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopwright.adapters.http.chat import ChatService, ServerOptions
from loopwright.adapters.http.memo import LastTurns, SessionAgents, _Bounded
from loopwright.adapters.http.request import parse_chat_request
from loopwright.adapters.llm.fake_server import FakeOpenAIServer
from loopwright.adapters.wiring import App, Settings
from loopwright.engine.testing.chunks import Script, text_reply
from loopwright.schemas import Agent, TextDelta
from loopwright.workflows.agent.errors import AgentNotFoundError

from .live import agent

SYSTEM = {"role": "system", "content": "You are a helpful voice assistant."}

# -- the memories alone -------------------------------------------------------------------------


def test_a_resolution_lasts_its_time_to_live() -> None:
    sessions = SessionAgents(30.0)
    ava = agent()
    sessions.put(("", "ava", "s1"), ava, template=None, now=100.0)
    assert sessions.get(("", "ava", "s1"), 129.9) is ava
    assert sessions.get(("", "ava", "s2"), 100.0) is None
    assert sessions.get(("", "ava", "s1"), 130.0) is None  # expired, and dropped
    assert len(sessions) == 0
    with pytest.raises(ValueError, match=">= 0"):
        SessionAgents(-1.0)


def test_forgetting_an_agent_or_its_template_drops_its_resolutions() -> None:
    sessions = SessionAgents(30.0)
    one, two = agent("t~1"), agent("t~2")
    sessions.put(("", "t", "s1"), one, template="agent-t", now=0.0)
    sessions.put(("", "t", "s2"), two, template="agent-t", now=0.0)
    sessions.put(("", "ava", "s1"), agent(), template=None, now=0.0)
    sessions.forget(one.id)
    assert sessions.get(("", "t", "s1"), 1.0) is None
    assert sessions.get(("", "t", "s2"), 1.0) is two
    sessions.forget("agent-t")
    assert sessions.get(("", "t", "s2"), 1.0) is None
    assert len(sessions) == 1


def test_a_turn_is_surely_new_only_while_the_agent_has_not_moved() -> None:
    last = LastTurns()
    ava = agent(version=7)
    assert not last.surely_new(ava, "k2")  # nothing remembered: look at the store
    last.ran(ava.id, "k1", 7)
    assert last.surely_new(ava, "k2")
    assert not last.surely_new(ava, "k1")  # the same key: maybe a retry
    assert not last.surely_new(agent(version=8), "k2")  # something else wrote the agent
    last.ran(ava.id, "k2", None)  # a turn whose end is not known
    assert not last.surely_new(ava, "k3")


@given(st.lists(st.tuples(st.integers(0, 20), st.integers()), max_size=60), st.integers(1, 5))
def test_a_bounded_memo_keeps_the_newest_entries(puts: list[tuple[int, int]], limit: int) -> None:
    memo: _Bounded[int, int] = _Bounded(limit)
    model: dict[int, int] = {}
    for key, value in puts:
        memo.put(key, value)
        model.pop(key, None)
        model[key] = value
    newest = list(model.items())[-limit:]
    assert memo.items() == newest
    assert len(memo) <= limit


# -- against the store: two processes -----------------------------------------------------------


@contextlib.asynccontextmanager
async def two_servers(
    tmp_path: Path, script: Script, agents: Sequence[Agent], options: ServerOptions | None = None
) -> AsyncIterator[tuple[ChatService, ChatService, FakeOpenAIServer]]:
    """Two chat services, each on its own `App` over one SQLite file (two processes)."""
    async with FakeOpenAIServer(script) as llm:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
            base_url=llm.base_url,
            api_key="test",
        )
        async with await App.open(settings) as one, await App.open(settings) as two:
            for a in agents:
                await one.create_agent(a)
            yield ChatService(one, options), ChatService(two, options), llm


async def say(
    service: ChatService, messages: list[Any], *, model: str = "ava", session: str = "s1"
) -> str:
    """One streamed turn through the service, as the endpoint runs it; the text heard."""
    body = {"model": model, "messages": messages, "stream": True}
    turn = await service.open(
        "", {"x-livekit-session-id": session}, parse_chat_request(orjson.dumps(body))
    )
    try:
        return "".join([e.text async for e in turn.events() if isinstance(e, TextDelta)])
    finally:
        await service.close(turn, disconnected=False)


async def test_a_retry_of_a_turn_another_process_ran_is_replayed(tmp_path: Path) -> None:
    script = [text_reply("Hello there."), text_reply("Sunny in Paris.")]
    async with two_servers(tmp_path, script, [agent()]) as (first, second, llm):
        opening = [SYSTEM, {"role": "user", "content": "hi"}]
        assert await say(first, opening) == "Hello there."
        follow = [*opening, {"role": "assistant", "content": "Hello there."}]
        follow.append({"role": "user", "content": "weather?"})
        assert await say(second, follow) == "Sunny in Paris."
        # The first process's last turn was another one, but the agent moved since: the
        # store is asked, and the retry is answered from it.
        assert await say(first, follow) == "Sunny in Paris."
        assert len(llm.requests) == 2


async def test_a_retry_after_a_remembered_turn_is_still_replayed(tmp_path: Path) -> None:
    script = [text_reply("Hello there."), text_reply("Sunny in Paris.")]
    async with two_servers(tmp_path, script, [agent()]) as (first, _, llm):
        opening = [SYSTEM, {"role": "user", "content": "hi"}]
        follow = [*opening, {"role": "assistant", "content": "Hello there."}]
        follow.append({"role": "user", "content": "weather?"})
        for messages in (opening, follow, follow):
            await say(first, messages)
        assert len(llm.requests) == 2
        assert len(first.last_turns) == 1


async def test_a_session_agent_deleted_mid_session_is_made_again(tmp_path: Path) -> None:
    script = [text_reply("One."), text_reply("Two.")]
    template = agent("tmpl", is_template=True)
    async with two_servers(tmp_path, script, [template]) as (first, second, _):
        opening = [SYSTEM, {"role": "user", "content": "hi"}]
        assert await say(first, opening, model="tmpl") == "One."
        made = [a for a in await first.app.store.list_agents() if not a.is_template]
        await second.app.store.delete_agent(made[0].id)  # by another process
        assert await say(first, opening, model="tmpl") == "Two."
        again = [a for a in await first.app.store.list_agents() if not a.is_template]
        assert [a.name for a in again] == [made[0].name]
        assert again[0].id != made[0].id


@pytest.mark.parametrize("how", ["forget", "no memory"])
async def test_a_deleted_template_stops_its_sessions(tmp_path: Path, how: str) -> None:
    template = agent("tmpl", is_template=True)
    options = ServerOptions(resolve_ttl_s=0.0 if how == "no memory" else 300.0)
    async with two_servers(tmp_path, [text_reply("One.")], [template], options) as (first, _, _llm):
        opening = [SYSTEM, {"role": "user", "content": "hi"}]
        await say(first, opening, model="tmpl")
        await first.app.store.delete_agent(template.id)
        if how == "forget":
            first.forget(template.id)  # what the agents API does after a delete
        with pytest.raises(AgentNotFoundError):
            await say(first, opening, model="tmpl")
