"""Issue 5, point 6: nothing blocks the event loop during a turn.

Whole turns run through the real stack (uvicorn, the app, `OpenAILLM` over loopback, the fake
OpenAI server, a SQLite file or PostgreSQL) with asyncio debug mode on and a 50 ms
slow-callback threshold. In debug mode asyncio logs `Executing <handle> took N seconds` for
every callback that held the loop longer; any such line fails the test. The turns stream text,
run a sync tool that blocks its thread for longer than the threshold (so it must run on a
worker thread) beside an async tool, and store everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loopwright.engine.testing.chunks import CallSpec, text_reply, tool_calls_reply
from loopwright.schemas import Agent
from loopwright.workflows.agent.invariants import check_log

from ..adapters.http.live import chat_body, post
from ..adapters.llm.live_stack import live_stack
from ..adapters.tools import reliability_tools
from ..pg import postgres_schema

SLOW_S = 0.05
TOOLS = "tests.adapters.tools.reliability_tools"


class SlowCallbacks(logging.Handler):
    """Collects asyncio's slow-callback warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing ") and " took " in message:
            self.found.append(message)


@contextlib.asynccontextmanager
async def watched_loop() -> AsyncIterator[SlowCallbacks]:
    """Debug mode and a 50 ms threshold on the running loop, its warnings collected.

    The objects that exist before the watch are frozen out of the garbage collector: a full
    collection of a long pytest session's heap takes 0.1-0.3 s and would be blamed on
    whichever callback it interrupted. The turns' own objects are still collected.
    """
    loop = asyncio.get_running_loop()
    debug, threshold = loop.get_debug(), loop.slow_callback_duration
    handler = SlowCallbacks()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    gc.collect()
    gc.freeze()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_S
    try:
        yield handler
    finally:
        loop.set_debug(debug)
        loop.slow_callback_duration = threshold
        gc.unfreeze()
        logger.removeHandler(handler)


async def test_the_watch_catches_a_blocking_callback() -> None:
    async def blocks() -> None:
        time.sleep(SLOW_S * 1.6)  # noqa: ASYNC251 (the blocking call the watch must catch)

    async with watched_loop() as slow:
        await asyncio.create_task(blocks())
    assert len(slow.found) == 1
    assert "took" in slow.found[0]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A SQLite file, or a fresh PostgreSQL schema (mandatory when CI=true: tests/pg.py)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}"
        return
    async with postgres_schema() as url:
        yield url


CALLS = [
    CallSpec(
        id="call_block",
        name="blocking_weather",
        arguments=json.dumps({"pre_exec_msg": "Let me look.", "city": "Oslo"}),
    ),
    CallSpec(
        id="call_async",
        name="async_weather",
        arguments=json.dumps({"pre_exec_msg": "And tomorrow.", "city": "Oslo"}),
    ),
]
SCRIPT = [
    tool_calls_reply(CALLS, fragments=6),
    text_reply("Rain today, sun tomorrow, so take an umbrella.", parts=12),
    text_reply("You are welcome, have a good trip to Oslo.", parts=12),
]


async def test_whole_turns_never_block_the_loop(tmp_path: Path, database_url: str) -> None:
    ada = Agent(id="agent-ada", name="ada", model="scripted", tools=(TOOLS,))
    reliability_tools.CALLS.clear()
    async with live_stack(tmp_path, SCRIPT, agents=[ada], database_url=database_url) as live:
        url = f"{live.base_url}/chat/completions"
        history = [{"role": "user", "content": "Weather in Oslo?"}]
        async with watched_loop() as slow:
            first = (await post(url, chat_body(history, model="ada"))).stream()
            history += [
                {"role": "assistant", "content": first.text},
                {"role": "user", "content": "Thanks!"},
            ]
            second = (await post(url, chat_body(history, model="ada"))).stream()
        assert slow.found == []
        log = await live.app.store.list_messages("agent-ada")
        context = (await live.app.store.load_context("agent-ada")).messages
    assert first.text.endswith("take an umbrella.")
    assert second.text == "You are welcome, have a good trip to Oslo."
    assert [name for name, _ in reliability_tools.CALLS] == ["blocking_weather", "async_weather"]
    roles = ["user", "assistant", "tool", "tool", "assistant", "user", "assistant"]
    assert [m.role for m in log] == roles
    assert check_log(log, context) == []
