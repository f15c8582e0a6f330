"""A live `loopwright serve` stack on loopback for the server tests.

uvicorn (httptools) serves the real ASGI app in the test's event loop, over a real SQLite file
and the project's fake OpenAI-compatible server. Clients are real: the `openai` SDK, aiohttp,
`curl`, the Node SDK. Every stream a test reads goes through `lint_stream`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from attrs import frozen

from loopwright.adapters.http.app import create_app
from loopwright.adapters.http.auth import Keyring
from loopwright.adapters.http.chat import ServerOptions
from loopwright.adapters.http.serving import serving
from loopwright.adapters.llm.fake_server import FakeOpenAIServer
from loopwright.adapters.wiring import App, Settings
from loopwright.engine.testing.chunks import Script
from loopwright.schemas import Agent, Block

from .lint import ParsedStream, lint_stream


@frozen
class Live:
    """A running server: its base URL, the app behind it and the fake LLM it calls."""

    base_url: str
    """`http://127.0.0.1:PORT/v1`."""
    root: str
    """`http://127.0.0.1:PORT`."""
    app: App
    llm: FakeOpenAIServer


@contextlib.asynccontextmanager
async def live_server(
    tmp_path: Path,
    script: Script | None = None,
    *,
    keyring: Keyring | None = None,
    options: ServerOptions | None = None,
    agents: Sequence[Agent] = (),
    blocks: Sequence[Block] = (),
    lag_probe: bool = False,
) -> AsyncIterator[Live]:
    """Start the LLM, the app and uvicorn; create `agents`; stop everything at the end."""
    async with FakeOpenAIServer(script) as llm:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'server.db'}",
            base_url=llm.base_url,
            api_key="test",
        )
        app = await App.open(settings)
        try:
            for agent in agents:
                await app.create_agent(agent, blocks)
            asgi = create_app(app, keyring=keyring, options=options, lag_probe=lag_probe)
            async with serving(asgi) as server:
                root = server.root
                yield Live(base_url=f"{root}/v1", root=root, app=app, llm=llm)
        finally:
            await app.aclose()


def agent(name: str = "ava", **kw: Any) -> Agent:
    """An agent for the fake LLM (model `scripted`)."""
    kw.setdefault("model", "scripted")
    kw.setdefault("system", "You are Ava.")
    return Agent(id=f"agent-{name}", name=name, **kw)


@frozen
class Reply:
    """One raw HTTP answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    def stream(self, *, include_usage: bool = False) -> ParsedStream:
        assert self.status == 200, (self.status, self.body[:300])
        return lint_stream(self.body, include_usage=include_usage)


async def post(
    url: str,
    body: Any,
    *,
    headers: Mapping[str, str] | None = None,
    raw: bytes | None = None,
) -> Reply:
    """POST a body (JSON, or `raw` bytes as is) and read the whole answer."""
    data = raw if raw is not None else orjson.dumps(body)
    hdrs = {"content-type": "application/json", **(headers or {})}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=hdrs) as response,
    ):
        return Reply(response.status, _lower(response.headers), await response.read())


async def request(
    method: str, url: str, body: Any = None, *, headers: Mapping[str, str] | None = None
) -> Reply:
    """Any method; `body` sent as JSON when given."""
    data = None if body is None else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=data, headers=headers) as response,
    ):
        return Reply(response.status, _lower(response.headers), await response.read())


def chat_body(
    messages: Sequence[Mapping[str, Any]], *, model: str = "ava", **kw: Any
) -> dict[str, Any]:
    return {"model": model, "messages": list(messages), "stream": True, **kw}


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
