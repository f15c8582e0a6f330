"""LLM implementations under test: the scripted LLM and `OpenAILLM` (both transports) over a
fake server on loopback, built from the same script."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from typing import Any

import pytest

from loopwright.adapters.llm.fake_server import FakeOpenAIServer
from loopwright.adapters.llm.openai_llm import OpenAILLM
from loopwright.engine.errors import LLMError
from loopwright.engine.testing.chunks import Script
from loopwright.engine.testing.scripted_llm import ScriptedLLM

TIMEOUT = 0.15
KINDS = ["scripted", "aiohttp", "sdk"]

LLMFactory = Callable[[Script], AbstractAsyncContextManager[Any]]


@asynccontextmanager
async def open_llm(kind: str, script: Script) -> AsyncIterator[Any]:
    """An LLM of `kind` playing `script` (with short timeouts)."""
    if kind == "scripted":
        yield ScriptedLLM(script, timeout=TIMEOUT)
        return
    async with FakeOpenAIServer(script, hang_limit=5.0) as server:
        llm = OpenAILLM(
            base_url=server.base_url,
            api_key="sk-test",
            transport=kind,  # type: ignore[arg-type]
            first_byte_timeout=TIMEOUT,
            read_timeout=TIMEOUT,
        )
        try:
            yield llm
        finally:
            await llm.aclose()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each LLM implementation in turn."""
    return str(request.param)


async def collect(
    llm: Any, body: dict[str, Any] | None = None
) -> tuple[list[Any], LLMError | None]:
    """Every chunk streamed, and the LLMError that ended the stream (or None)."""
    chunks: list[Any] = []
    try:
        async with aclosing(llm.stream(body or {"model": "scripted", "messages": []})) as stream:
            async for chunk in stream:
                chunks.append(chunk)
    except LLMError as exc:
        return chunks, exc
    return chunks, None
