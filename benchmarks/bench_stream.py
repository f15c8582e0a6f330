"""Streaming cost: client CPU per chunk of a 2,000-chunk text stream, three ways.

Run: `python benchmarks/bench_stream.py [--burst] [--rounds N]`.

The fake OpenAI server runs in this process, on its own thread and event loop; each variant
is timed with `time.thread_time()` on the client thread, so only the client's CPU counts.
By default the server paces chunks (~0.3 ms apart) so most reads carry one chunk, as with a
real model; `--burst` writes them back to back (reads then batch many chunks).

Variants: the SDK's typed stream (`create(stream=True)`), the SDK's raw response with
`iter_lines()` + `json.loads`, and `OpenAILLM` (aiohttp + SSE splitter + orjson), plus its
`transport="sdk"` fallback, and a floor: aiohttp reading the body and parsing nothing.
Rounds are interleaved; medians are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import Any

import openai

from loopwright.adapters.llm.fake_server import FakeOpenAIServer
from loopwright.adapters.llm.openai_llm import OpenAILLM, Transport
from loopwright.engine.testing.chunks import Delay, Response, Step, text_reply
from loopwright.workflows.agent.fold import StreamFold

CHUNKS = 2_000
TRANSPORTS: tuple[Transport, ...] = ("aiohttp", "sdk")
META = {  # the size and fields of a real gpt-4o-mini chunk
    "id": "chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc",
    "model": "gpt-4o-mini-2024-07-18",
    "service_tier": "default",
    "system_fingerprint": "fp_d0469e1700",
    "usage": None,
    "obfuscation": "auU6fTns",
}
BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "count"}],
    "stream": True,
}


def make_response(paced: bool) -> Response:
    reply = text_reply("x" * CHUNKS, parts=CHUNKS, usage_tokens=(10, CHUNKS), meta=META)
    if not paced:
        return reply
    steps: list[Step] = []
    for step in reply.steps:
        steps += [step, Delay(0.0003)]
    return Response(steps=tuple(steps))


class ServerThread:
    """The fake server on a private event loop in a daemon thread."""

    def __init__(self, response: Response) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.response = response
        self.server: FakeOpenAIServer | None = None

    def __enter__(self) -> str:
        self.thread.start()
        self.server = self._call(self._start())
        return self.server.base_url

    async def _start(self) -> FakeOpenAIServer:
        def respond(_body: Mapping[str, Any]) -> Response:
            return self.response

        server = FakeOpenAIServer(respond)
        await server.start()
        return server

    def _call(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self._call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


async def sdk_typed(client: openai.AsyncOpenAI, _llms: Any) -> int:
    stream = await client.chat.completions.create(**BODY)
    count = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            count += 1
    return count


async def sdk_raw(client: openai.AsyncOpenAI, _llms: Any) -> int:
    count = 0
    async with client.chat.completions.with_streaming_response.create(**BODY) as response:
        async for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    count += 1
    return count


async def _ours(llm: OpenAILLM) -> int:
    count = 0
    async with aclosing(llm.stream(BODY)) as stream:
        async for chunk in stream:
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                count += 1
    return count


async def ours_aiohttp(_client: Any, llms: dict[str, OpenAILLM]) -> int:
    return await _ours(llms["aiohttp"])


async def ours_sdk(_client: Any, llms: dict[str, OpenAILLM]) -> int:
    return await _ours(llms["sdk"])


async def aiohttp_floor(client: openai.AsyncOpenAI, _llms: Any) -> int:
    """Reads the body and counts frames, parsing nothing: the transport's own cost."""
    import aiohttp

    url = f"{client.base_url}chat/completions"
    async with aiohttp.ClientSession() as session, session.post(url, json=BODY) as response:
        frames = 0
        async for data in response.content.iter_any():
            frames += data.count(b"\n\n")
    return frames - 4  # role, finish, usage, [DONE]


Variant = Callable[[openai.AsyncOpenAI, dict[str, OpenAILLM]], Awaitable[int]]
VARIANTS: dict[str, Variant] = {
    "SDK typed stream": sdk_typed,
    "SDK raw + json.loads": sdk_raw,
    "OpenAILLM transport=sdk": ours_sdk,
    "OpenAILLM aiohttp (ours)": ours_aiohttp,
    "floor: bare aiohttp read": aiohttp_floor,
}


def fold_cost(response: Response) -> float:
    """µs per chunk for StreamFold.add over the same chunks, in memory."""
    chunks = [s for s in response.steps if isinstance(s, dict)]
    start = time.perf_counter()
    for _ in range(20):
        fold = StreamFold()
        for chunk in chunks:
            fold.add(chunk)
    return (time.perf_counter() - start) / (20 * len(chunks)) * 1e6


async def measure(base_url: str, rounds: int) -> dict[str, list[tuple[float, float]]]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    llms: dict[str, OpenAILLM] = {t: OpenAILLM(client=client, transport=t) for t in TRANSPORTS}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    try:
        for name, variant in VARIANTS.items():  # warm-up: connections, imports, caches
            assert await variant(client, llms) == CHUNKS, name
        for _ in range(rounds):
            for name, variant in VARIANTS.items():
                cpu, wall = time.thread_time(), time.perf_counter()
                await variant(client, llms)
                results[name].append((time.thread_time() - cpu, time.perf_counter() - wall))
    finally:
        for llm in llms.values():
            await llm.aclose()
        await client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="no pacing between chunks")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    response = make_response(paced=not args.burst)
    with ServerThread(response) as base_url:
        results = asyncio.run(measure(base_url, args.rounds))
    total = CHUNKS + 3  # role, finish and usage chunks too
    per_chunk = {n: statistics.median(c for c, _ in r) / total * 1e6 for n, r in results.items()}
    ours = per_chunk["OpenAILLM aiohttp (ours)"]
    mode = "burst" if args.burst else "paced"
    print(f"{total} chunks, {mode}, median of {args.rounds} rounds, client-thread CPU")
    print(f"{'variant':28} {'µs/chunk':>9} {'× ours':>7} {'wall s':>7}")
    for name, value in per_chunk.items():
        wall = statistics.median(w for _, w in results[name])
        print(f"{name:28} {value:9.1f} {value / ours:7.2f} {wall:7.2f}")
    print(f"{'StreamFold.add (in memory)':28} {fold_cost(response):9.2f}")


if __name__ == "__main__":
    main()
