"""The aiohttp transport builds the SDK's URL and headers once per model, only when they
cannot change from one request to the next."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from loopwright.adapters.llm import openai_llm
from loopwright.adapters.llm.fake_server import FakeOpenAIServer
from loopwright.adapters.llm.openai_llm import OpenAILLM, static_request_target

from .conftest import collect

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The model of every (URL, headers) the adapter had the SDK build."""
    seen: list[object] = []
    real = openai_llm.sdk_request_target

    async def counting(client: openai.AsyncOpenAI, model: object, sdk_timeout: Any) -> Any:
        seen.append(model)
        return await real(client, model, sdk_timeout)

    monkeypatch.setattr(openai_llm, "sdk_request_target", counting)
    return seen


async def _key() -> str:
    return "sk-x"


def test_which_clients_have_a_static_target() -> None:
    plain = openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="k")
    provided = openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key=_key)
    azure = openai.AsyncAzureOpenAI(
        azure_endpoint="http://127.0.0.1:9", api_key="k", api_version="2024-10-21"
    )
    azure_ad = openai.AsyncAzureOpenAI(
        azure_endpoint="http://127.0.0.1:9", azure_ad_token_provider=_key, api_version="2024-10-21"
    )
    assert static_request_target(plain)
    assert static_request_target(azure)
    assert not static_request_target(provided)
    assert not static_request_target(azure_ad)


async def test_a_static_target_is_built_once_per_model(built: list[object]) -> None:
    models = ["one", "two", "one", "two", "one"]
    async with FakeOpenAIServer() as server:
        endpoint = server.base_url.removesuffix("/v1")
        client = openai.AsyncAzureOpenAI(
            azure_endpoint=endpoint, api_key="az-key", api_version="2024-10-21"
        )
        llm = OpenAILLM(client=client)
        try:
            for model in models:
                _, error = await collect(llm, {"model": model, "messages": MESSAGES})
                assert error is None
        finally:
            await llm.aclose()
            await client.close()
        paths = [request.path for request in server.requests]
        keys = {request.headers["api-key"] for request in server.requests}
    assert built == ["one", "two"]
    assert paths == [f"/openai/deployments/{m}/chat/completions" for m in models]
    assert keys == {"az-key"}


async def test_a_key_provider_is_asked_on_every_request(built: list[object]) -> None:
    keys = iter(f"sk-{n}" for n in range(3))

    async def provider() -> str:
        return next(keys)

    async with FakeOpenAIServer() as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key=provider)
        llm = OpenAILLM(client=client)
        try:
            for _ in range(3):
                _, error = await collect(llm, {"model": "m", "messages": MESSAGES})
                assert error is None
        finally:
            await llm.aclose()
            await client.close()
        sent = [request.headers["authorization"] for request in server.requests]
    assert built == ["m"] * 3
    assert sent == ["Bearer sk-0", "Bearer sk-1", "Bearer sk-2"]
