"""Every recorded stream of shared/corpus/openai-streams, replayed byte for byte by the fake
server, read through the real SDK configuration by `OpenAILLM` (both transports) and folded.

The expected values below were written by reading the `.sse` files, not by running this code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from attrs import frozen

from loopwright.adapters.llm.fake_server import FakeOpenAIServer, replay
from loopwright.adapters.llm.openai_llm import OpenAILLM, Transport
from loopwright.engine.errors import LLMError
from loopwright.workflows.agent.fold import FoldResult, StreamFold

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus" / "openai-streams"


@frozen(kw_only=True)
class Expect:
    text: str = ""
    calls: tuple[tuple[str, str, Any], ...] = ()
    """(id, name, parsed arguments)"""
    usage: tuple[int, int, int] | None = None
    finish: str | None = None
    error: str | None = None
    refusal: str | None = None
    reasoning: str = ""
    """A prefix of the reasoning text."""


COUNTING = " 1\n" + "\n".join(str(n) for n in range(2, 215))

EXPECTED: dict[str, Expect] = {
    "01": Expect(text="The capital of the UK is London.", usage=(78, 9, 87), finish="stop"),
    "02": Expect(
        calls=(("call_ZR5UUuTt3pf61kjwAJIYdVMj", "get_capital", {"country": "UK"}),),
        usage=(53, 15, 68),
        finish="tool_calls",
    ),
    "03": Expect(
        calls=(
            (
                "call_CCGIWaMeYWmxOQ91orkmTvzn",
                "final_result",
                {
                    "answers": [
                        {"label": "Capital", "answer": "The capital of Mexico is Mexico City."},
                        {
                            "label": "Weather",
                            "answer": "The weather in Mexico City is currently sunny.",
                        },
                        {"label": "Product Name", "answer": "The product name is Pydantic AI."},
                    ]
                },
            ),
        ),
        usage=(448, 62, 510),
        finish="tool_calls",
    ),
    "04": Expect(
        calls=(
            ("call_q2UyBRP7eXNTzAoR8lEhjc9Z", "get_country", {}),
            ("call_b51ijcpFkDiTQG1bQzsrmtW5", "get_product_name", {}),
        ),
        usage=(364, 40, 404),
        finish="tool_calls",
    ),
    "05": Expect(
        calls=(
            (
                "call_JMW1whyEaYG438VE1OIflxA2",
                "GetWeatherArgs",
                {"city": "Edinburgh", "country": "GB", "units": "c"},
            ),
            (
                "call_DNYTawLBoN8fj3KN6qU9N1Ou",
                "get_stock_price",
                {"ticker": "AAPL", "exchange": "NASDAQ"},
            ),
        ),
        usage=(149, 60, 209),
        finish="tool_calls",
    ),
    "06": Expect(
        text="One of my favorite cities is Paris. I'll get the current weather for Paris now.",
        calls=(("call_QgHUYg30lU8RAkIADo1bLA3P", "get_weather", {"location": "Paris"}),),
        usage=(58, 32, 90),
        finish="tool_calls",
    ),
    "07": Expect(
        calls=(
            (
                "call_OIbHsv0i6bI1gbiGf1Se0OJS",
                "return_capitalcity",
                {"capital": "Dublin", "country": "Ireland"},
            ),
        ),
        usage=(73, 10, 83),
        finish="stop",
    ),
    "08": Expect(
        refusal="I'm sorry, I can't assist with that request.", usage=(79, 11, 90), finish="stop"
    ),
    "09": Expect(
        text='{"city":"San Francisco","temperature":65,"units":"f"}',
        usage=(79, 42, 121),
        finish="stop",
    ),
    "10": Expect(text="Foo!", usage=(9, 2, 11), finish="stop"),
    "11": Expect(usage=(13, 50, 63), finish="length"),
    "12": Expect(text="Paris.", usage=(13, 11, 24), finish="stop"),
    "13": Expect(
        text="Why did the Opentelemetry developer bring a ladder to the coding competition? "
        "\n\nBecause they wanted to reach new traces!",
        finish="stop",
    ),
    "14": Expect(
        calls=(
            ("call_GF8LHohCf34vryrD5mTlArH8", "secret_retrieval_tool", {"password": "mellon"}),
            ("call_7KowxRhncpXrPLQpuAMemn0y", "secret_retrieval_tool", {"password": "radiance"}),
        ),
        finish="tool_calls",
    ),
    "15": Expect(error="bad_request", reasoning="We need to call the tool with invalid pa"),
    "16": Expect(text="maybe", error="bad_request", reasoning='The user says: "dont make'),
    "17": Expect(
        calls=(
            (
                "fc_bfb39741-3748-4def-9886-a93fc9c64a90",
                "get_something_by_name",
                {"name": "example"},
            ),
        ),
        usage=(304, 49, 353),
        finish="tool_calls",
        reasoning="We need to call the function with correc",
    ),
    "18": Expect(
        text="I'll help you retrieve secrets using the provided passwords. Let me call the "
        "secret retrieval tool for each password.",
        calls=(
            ("call_8fb40ff4820f4e58b7058e95", "secret_retrieval_tool", {"password": "mellon"}),
            ("call_e9e2649998244b0f91551cf5", "secret_retrieval_tool", {"password": "radiance"}),
        ),
        usage=(191, 60, 251),
        finish="tool_calls",
    ),
    "19": Expect(
        calls=(
            (
                "call_632y2d4vrol1pyjdoxs117jg",
                "__mirascope_formatted_output_tool__",
                {"instructions": "I can't help with that."},
            ),
        ),
        usage=(207, 46, 253),
        finish="tool_calls",
    ),
    "20": Expect(
        calls=(("call_28sm5ma0", "return_list_of_int", {"value": "[1, 2, 3, 4, 5]"}),),
        finish="stop",
    ),
    "21": Expect(text="<|im_end|>doctor\n<|im_end|>supervisor\n<", finish="length"),
    # Cut short: no finish, no usage, no [DONE]. The text so far is folded, then the adapter
    # says the answer is not whole (the loop keeps it marked incomplete).
    "22": Expect(
        text=COUNTING, reasoning=" The user wants every integer from 1 thr", error="stream_error"
    ),
    "23": Expect(
        calls=(("nqjf8Hqe1", "plus", {"a": 1, "b": 2}), ("ATcpCKul3", "minus", {"a": 2, "b": 1})),
        usage=(187, 45, 232),
        finish="tool_calls",
    ),
    "24": Expect(
        calls=(
            (
                "call_05994332",
                "return_list_of_str",
                {"value": ["apple", "banana", "orange", "grape", "strawberry"]},
            ),
        ),
        usage=(142, 1, 143),
        finish="tool_calls",
    ),
    "25": Expect(error="bad_request", finish="length", reasoning="We need to respond"),
    "26": Expect(calls=(("0", "llm_version", {}),), usage=(57, 17, 74)),
    "27": Expect(
        calls=(("llm_version:0", "llm_version", {}),), usage=(56, 12, 68), finish="tool_calls"
    ),
    "28": Expect(
        text="Hello there! \U0001f60a How can I help you today?",
        usage=(6, 212, 218),
        finish="stop",
        reasoning='Hmm, the user just said "Hello".',
    ),
    "29": Expect(
        text="4",
        usage=(13, 564, 577),
        finish="stop",
        reasoning="\n1.  **Analyze the User's Request:**",
    ),
    "30": Expect(text="4", usage=(22, 5, 27)),
}

FILES = sorted(CORPUS.glob("*.sse"))


def test_every_corpus_file_has_an_expectation() -> None:
    assert len(FILES) == 30
    assert sorted(f.name[:2] for f in FILES) == sorted(EXPECTED)


def _responder(read_size: int | None) -> Any:
    def respond(body: Mapping[str, Any]) -> Any:
        return replay(CORPUS / body["model"], read_size=read_size)

    return respond


async def _fold(llm: OpenAILLM, name: str) -> tuple[FoldResult, LLMError | None]:
    fold = StreamFold()
    streamed: list[str] = []
    error = None
    try:
        async with aclosing(llm.stream({"model": name, "messages": []})) as chunks:
            async for chunk in chunks:
                streamed.append(fold.add(chunk))
    except LLMError as exc:
        error = exc
    result = fold.result()
    # every visible piece (content, and refusal text the user must hear) came out as it arrived
    assert "".join(streamed) == result.text + (result.refusal or "")
    return result, error


def _check(result: FoldResult, error: LLMError | None, expect: Expect) -> None:
    assert result.text == expect.text
    got = [(c.id, c.name, json.loads(c.arguments)) for c in result.tool_calls]
    assert got == list(expect.calls)
    assert result.outcome == ("tool_calls" if expect.calls else "reply")
    usage = result.usage
    got_usage = (
        None
        if usage is None
        else (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"])
    )
    assert got_usage == expect.usage
    assert result.finish_reason == expect.finish
    assert result.refusal == expect.refusal
    assert result.reasoning.startswith(expect.reasoning)
    assert bool(result.reasoning) == bool(expect.reasoning)
    assert (error.code if error else None) == expect.error
    if error is not None and error.code == "stream_error":
        assert (error.retryable, error.status) == (True, None)
    elif error is not None:
        assert (error.retryable, error.status) == (False, 400)


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
@pytest.mark.parametrize("read_size", [None, 61])
async def test_corpus_replay(transport: Transport, read_size: int | None) -> None:
    async with FakeOpenAIServer(_responder(read_size)) as server:
        llm = OpenAILLM(base_url=server.base_url, api_key="sk-test", transport=transport)
        try:
            for path in FILES:
                result, error = await _fold(llm, path.name)
                try:
                    _check(result, error, EXPECTED[path.name[:2]])
                except AssertionError as exc:
                    raise AssertionError(f"{path.name}: {exc}") from exc
        finally:
            await llm.aclose()
        assert len(server.requests) == len(FILES)
        for request in server.requests:
            assert request.body["stream"] is True
            assert request.body["stream_options"] == {"include_usage": True}
            assert request.headers["authorization"] == "Bearer sk-test"
