"""`loopwright serve` over the real `OpenAILLM` with short timeouts, for the reliability tests.

`tests/adapters/http/live.py` builds its LLM from `Settings`, whose timeouts are a minute; a
fault test needs the adapter to give up on a silent provider in a fraction of a second, on
either transport, and sometimes a PostgreSQL store. Everything else is the same real stack:
uvicorn (httptools) in the test's loop, the ASGI app, a real store, the fake OpenAI server.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from loopwright.adapters.http.app import create_app
from loopwright.adapters.http.chat import ServerOptions
from loopwright.adapters.http.serving import serving
from loopwright.adapters.llm.fake_server import FakeOpenAIServer
from loopwright.adapters.llm.openai_llm import OpenAILLM, Transport
from loopwright.adapters.wiring import App, Settings
from loopwright.engine.testing.chunks import Script
from loopwright.schemas import Agent

from ..http.live import Live

TIMEOUT_S = 0.5
"""The adapter's first-byte and between-reads timeouts: a `Hang` costs this much (short,
yet far above a loopback answer even on a loaded machine)."""


@contextlib.asynccontextmanager
async def live_stack(
    tmp_path: Path,
    script: Script,
    *,
    agents: Sequence[Agent] = (),
    transport: Transport = "aiohttp",
    database_url: str | None = None,
    options: ServerOptions | None = None,
) -> AsyncIterator[Live]:
    """The fake LLM, `OpenAILLM` on `transport`, the app on a SQLite file (or `database_url`)
    and uvicorn; `agents` are created first. Everything is stopped at the end."""
    async with FakeOpenAIServer(script, hang_limit=5.0) as upstream:
        llm = OpenAILLM(
            base_url=upstream.base_url,
            api_key="sk-test",
            transport=transport,
            first_byte_timeout=TIMEOUT_S,
            read_timeout=TIMEOUT_S,
        )
        url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'reliability.db'}"
        app = await App.open(Settings(database_url=url), llm=llm)
        try:
            for agent in agents:
                await app.create_agent(agent)
            async with serving(create_app(app, options=options)) as server:
                root = server.root
                yield Live(base_url=f"{root}/v1", root=root, app=app, llm=upstream)
        finally:
            await app.aclose()
