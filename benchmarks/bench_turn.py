"""Turn cost: loopwright's full agent loop against the bare `openai` SDK and an aiohttp floor.

Run: `python benchmarks/bench_turn.py [--rounds N] [--delay S]`, or
`python benchmarks/bench_turn.py --profile tool|short|long [--memory] [--turns N]` for where
a loopwright turn's time goes (spans between its events, store calls, pieces alone).

The fake OpenAI server runs in a child process (this script with `--serve`), so its CPU never
counts: every sample is the client process's CPU (`time.process_time()`, all its threads:
the SQLite worker threads and the tool thread count), the main thread's share
(`time.thread_time()`) and wall time. After the first token, chunks are paced `--delay` apart
(one per read, as from a real model; the event loop's timer makes 0.3 ms about 1.2 ms).
Rounds are interleaved, the order of the variants rotating each round; medians are reported.

Variants: (a) the SDK's typed stream; (b) the SDK's raw response, `iter_lines()` and
`json.loads`; (f) the floor: aiohttp, a minimal SSE split and orjson; (c) loopwright: `App`
on a SQLite file (durability `sync`), `OpenAILLM` on aiohttp, a Python tool; (c0) the same
loop on in-memory stores, which tells persistence apart from the rest. (a), (b) and (f) do by
hand what the loop does, minus persistence: the same messages (system prompt, one earlier
exchange, the user message) and tools, fold the call, run the same function, send the second
request. Scenarios: `tool` (a call with `pre_exec_msg`, then a short reply), `short` (a
13-chunk reply), `long` (2,000 chunks). The first token is the first text the user could
hear: the first character of `pre_exec_msg` in `tool`, the first content delta else. Per
chunk is the marginal cost: (long - short) / the difference in chunks, per round.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import itertools
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import openai
import orjson
from attrs import frozen

from loopwright.adapters.tools.demo import get_weather
from loopwright.adapters.wiring import App, Settings
from loopwright.engine.testing.chunks import CallSpec, Delay, Response, Step, text_reply
from loopwright.engine.testing.chunks import tool_calls_reply as calls_reply
from loopwright.engine.testing.memory import MemoryRunStore
from loopwright.schemas import Agent, Block, Message, RunFailed, RunStarted, StateEntered, TextDelta
from loopwright.workflows.agent.memory_store import MemoryAgentStore

A, F = "(a) SDK typed stream", "(f) floor: aiohttp+SSE+orjson"
LONG_CHUNKS = 2_000
PRE_EXEC = "One moment, let me check the weather in Paris for you."
TOOL_ARGS = json.dumps({"pre_exec_msg": PRE_EXEC, "city": "Paris"})
AFTER_TOOL = "It is light rain and 14 degrees in Paris today, so take an umbrella."
SHORT = "Hello! I am a benchmark model and this is a short reply of a few words."
WARM = "Hi there."
TRIGGERS = {"tool": "What is the weather in Paris?", "short": "Say hello.", "long": "Count."}
SCENARIOS = tuple(TRIGGERS)
META = {  # the size and fields of a real gpt-4o-mini chunk
    "id": "chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc",
    "model": "gpt-4o-mini-2024-07-18",
    "service_tier": "default",
    "system_fingerprint": "fp_d0469e1700",
    "usage": None,
    "obfuscation": "auU6fTns",
}
_SPOKEN = re.compile(r'"pre_exec_msg"\s*:\s*"[^"]')

# ---------------------------------------------------------------------------------------------
# The server side (child process)


def reply_kind(body: Mapping[str, Any]) -> str:
    """Which scripted answer a request gets: by its last tool or user message."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "tool":
            return "after_tool"
        if message.get("role") == "user":
            kinds = {text: kind for kind, text in TRIGGERS.items()}
            return kinds.get(message.get("content"), "warm")
    raise ValueError("no user or tool message in the request")


@functools.cache
def reply(kind: str, delay: float = 0.0) -> Response:
    """The scripted answer of a kind, paced; built once (the server's CPU is not timed, but
    building 2,000 chunks would delay the first one)."""
    call = CallSpec(id="call_bench_1", name="get_weather", arguments=TOOL_ARGS)
    build: dict[str, Callable[[], Response]] = {
        "after_tool": lambda: text_reply(AFTER_TOOL, parts=12, meta=META),
        "tool": lambda: calls_reply([call], fragments=10, meta=META),
        "long": lambda: text_reply("x" * LONG_CHUNKS, parts=LONG_CHUNKS, meta=META),
        "short": lambda: text_reply(SHORT, parts=10, meta=META),
        "warm": lambda: text_reply(WARM, parts=3, meta=META),
    }
    return paced(build[kind](), delay)


def first_token_step(response: Response) -> int:
    """The index of the step that carries the first text the user could hear."""
    arguments = ""
    for index, step in enumerate(response.steps):
        if not isinstance(step, dict) or not step["choices"]:
            continue
        delta = step["choices"][0]["delta"]
        if delta.get("content"):
            return index
        for tc in delta.get("tool_calls") or ():
            arguments += tc["function"].get("arguments") or ""
        if _SPOKEN.search(arguments):
            return index
    return len(response.steps)


def paced(response: Response, delay: float) -> Response:
    """The response with `delay` seconds between chunks after the first token.

    Up to the first token the chunks go at once, so that the time to the first token is
    the client's and the server's, not the pacing's."""
    if delay <= 0:
        return response
    burst = first_token_step(response) + 1
    steps: list[Step] = list(response.steps[:burst])
    for step in response.steps[burst:]:
        steps += [Delay(delay), step]
    return Response(steps=tuple(steps), done=response.done)


async def serve(delay: float) -> None:
    """Serve until stdin closes; the base URL is the first line on stdout."""
    from loopwright.adapters.llm.fake_server import FakeOpenAIServer

    async with FakeOpenAIServer(lambda body: reply(reply_kind(body), delay)) as server:
        print(server.base_url, flush=True)
        await asyncio.to_thread(sys.stdin.read)


class ServerProcess:
    """The fake server in a child process (its CPU is not ours)."""

    def __init__(self, delay: float) -> None:
        self._args = [sys.executable, __file__, "--serve", f"--delay={delay}"]
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> str:
        self._proc = subprocess.Popen(
            self._args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        return self._proc.stdout.readline().strip()

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait(timeout=10)


def chunk_count(scenario: str) -> int:
    """SSE chunks the client reads in one turn of `scenario` ([DONE] included)."""
    replies = [reply(scenario)] + ([reply("after_tool")] if scenario == "tool" else [])
    return sum(len(r.steps) + 1 for r in replies)


# ---------------------------------------------------------------------------------------------
# Timing


@frozen(kw_only=True)
class Sample:
    """One timed turn, in seconds."""

    cpu: float
    """Process CPU, every thread."""
    main_cpu: float
    """CPU of the thread running the event loop."""
    wall: float
    """Wall time of the whole turn."""
    first_cpu: float
    """Process CPU until the first token."""
    first_wall: float
    """Wall time until the first token."""


class Timer:
    """Process CPU, main-thread CPU and wall time of one turn, and to its first token."""

    __slots__ = ("_cpu", "_first_cpu", "_first_wall", "_main", "_wall")

    def __init__(self) -> None:
        self._first_wall = self._first_cpu = -1.0
        self._main = time.thread_time()
        self._cpu = time.process_time()
        self._wall = time.perf_counter()

    def first(self) -> None:
        if self._first_wall < 0:
            self._first_wall = time.perf_counter() - self._wall
            self._first_cpu = time.process_time() - self._cpu

    def done(self) -> Sample:
        wall, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
        return Sample(
            cpu=cpu - self._cpu,
            main_cpu=main - self._main,
            wall=wall - self._wall,
            first_cpu=self._first_cpu,
            first_wall=self._first_wall,
        )


# ---------------------------------------------------------------------------------------------
# (a), (b), (f): the turn by hand


class Fold:
    """A hand-written fold of one stream: text, calls by index, the first token."""

    def __init__(self, timer: Timer) -> None:
        self.timer = timer
        self.parts: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self._spoken = False

    def text(self, piece: str) -> None:
        self.timer.first()
        self.parts.append(piece)

    def call(self, index: int, id: str | None, name: str | None, arguments: str | None) -> None:
        entry = self.calls.get(index)
        if entry is None:
            entry = self.calls[index] = {
                "id": "",
                "type": "function",
                "function": {"name": "", "arguments": ""},
            }
        entry["id"] = entry["id"] or id or ""
        entry["function"]["name"] = entry["function"]["name"] or name or ""
        entry["function"]["arguments"] += arguments or ""
        if not self._spoken and _SPOKEN.search(entry["function"]["arguments"]):
            self._spoken = True
            self.timer.first()

    def chunk(self, chunk: Mapping[str, Any]) -> None:
        if not chunk["choices"]:
            return
        delta = chunk["choices"][0]["delta"]
        if delta.get("content"):
            self.text(delta["content"])
        for tc in delta.get("tool_calls") or ():
            fn = tc.get("function") or {}
            self.call(tc["index"], tc.get("id"), fn.get("name"), fn.get("arguments"))


StreamFn = Callable[[dict[str, Any], Fold], Awaitable[None]]


async def run_tool(call: Mapping[str, Any]) -> dict[str, Any]:
    """Call the Python tool as a hand-written loop would: parse, drop pre_exec_msg, call."""
    arguments = json.loads(call["function"]["arguments"])
    arguments.pop("pre_exec_msg", None)
    result = get_weather(**arguments)
    return {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)}


class ByHand:
    """One of (a), (b), (f): the same two-request turn, different transport and parsing."""

    def __init__(
        self,
        name: str,
        stream: StreamFn,
        prefix: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]],
    ) -> None:
        self.name, self._stream, self._prefix, self._tools = name, stream, prefix, tools

    async def prepare(self, scenario: str) -> None:
        pass

    def _body(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "model": "gpt-4o-mini",
            "messages": messages,
            "tools": self._tools,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    async def turn(self, scenario: str, timer: Timer) -> str:
        messages = [*self._prefix, {"role": "user", "content": TRIGGERS[scenario]}]
        fold = Fold(timer)
        await self._stream(self._body(messages), fold)
        if not fold.calls:
            return "".join(fold.parts)
        calls = list(fold.calls.values())
        messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        messages += [await run_tool(call) for call in calls]
        spoken = str(json.loads(calls[0]["function"]["arguments"])["pre_exec_msg"])
        fold = Fold(timer)
        await self._stream(self._body(messages), fold)
        return spoken + " " + "".join(fold.parts)


def sdk_typed(client: openai.AsyncOpenAI) -> StreamFn:
    async def stream(body: dict[str, Any], fold: Fold) -> None:
        async for chunk in await client.chat.completions.create(**body):
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if delta.content:
                fold.text(delta.content)
            for tc in delta.tool_calls or ():
                fn = tc.function
                fold.call(tc.index, tc.id, fn and fn.name, fn and fn.arguments)

    return stream


def sdk_raw(client: openai.AsyncOpenAI) -> StreamFn:
    async def stream(body: dict[str, Any], fold: Fold) -> None:
        async with client.chat.completions.with_streaming_response.create(**body) as response:
            async for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    fold.chunk(json.loads(line[6:]))

    return stream


def floor(session: aiohttp.ClientSession, base_url: str) -> StreamFn:
    url = f"{base_url}/chat/completions"
    headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}

    async def stream(body: dict[str, Any], fold: Fold) -> None:
        async with session.post(url, data=orjson.dumps(body), headers=headers) as response:
            rest = b""
            async for data in response.content.iter_any():
                *frames, rest = (rest + data).split(b"\n\n")
                for frame in frames:
                    if frame.startswith(b"data: ") and frame != b"data: [DONE]":
                        fold.chunk(orjson.loads(frame[6:]))

    return stream


# ---------------------------------------------------------------------------------------------
# (c): loopwright


C = "(c) loopwright loop"
C0 = "(c0) loopwright, memory stores"


class MemoryStore(MemoryRunStore, MemoryAgentStore):
    """Both store ports in memory: variant (c0), the loop with persistence taken out."""

    def __init__(self) -> None:
        MemoryRunStore.__init__(self)
        MemoryAgentStore.__init__(self)

    async def aclose(self) -> None:
        pass


class Loopwright:
    """The full loop: a fresh agent per timed turn, after one untimed turn warmed it."""

    def __init__(self, app: App, name: str = C) -> None:
        self.app = app
        self.name = name
        self.agent = ""

    async def new_agent(self) -> Agent:
        ids, clock = self.app.engine.ids, self.app.engine.clock
        agent = Agent(
            id=ids.new_id("agent"),
            name=ids.new_id("bench"),
            model="gpt-4o-mini",
            system="You are a helpful voice assistant. Be brief.",
            tools=("loopwright.adapters.tools.demo",),
            created_at=clock.now(),
        )
        return await self.app.create_agent(agent, [Block(label="human", value="Ada, in Paris.")])

    async def prepare(self, scenario: str) -> None:
        self.agent = (await self.new_agent()).id
        await self._turn(WARM, Timer())

    async def turn(self, scenario: str, timer: Timer) -> str:
        return await self._turn(TRIGGERS[scenario], timer)

    async def _turn(self, text: str, timer: Timer) -> str:
        parts: list[str] = []
        async for event in await self.app.turn(self.agent, text):
            if type(event) is TextDelta:
                timer.first()
                parts.append(event.text)
            elif type(event) is RunFailed:
                raise RuntimeError(f"the turn failed: {event.code}: {event.message}")
        return "".join(parts)

    async def by_hand_prefix(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The messages before the user's and the tools the loop sends, for (a), (b), (f)."""
        agent = await self.new_agent()
        self.agent = agent.id
        await self._turn(WARM, Timer())
        agent = await self.app.store.get_agent(agent.id)
        cached = await self.app.agents.context(agent)
        prefix = [{"role": "system", "content": cached.system}, *cached.wire]
        params = self.app.workflow(agent.workflow).params
        return prefix, self.app.agents.tools_payload(agent, params)


# ---------------------------------------------------------------------------------------------
# Measuring


Variant = ByHand | Loopwright
Results = dict[str, dict[str, list[Sample]]]  # scenario -> variant -> samples
Ratios = dict[str, tuple[float, float]]  # label -> (c / baseline, c0 / baseline)


def expected(scenario: str) -> str:
    return {"tool": f"{PRE_EXEC} {AFTER_TOOL}", "short": SHORT, "long": "x" * LONG_CHUNKS}[scenario]


async def one(variant: Variant, scenario: str) -> Sample:
    await variant.prepare(scenario)
    timer = Timer()
    text = await variant.turn(scenario, timer)
    sample = timer.done()
    if text.replace(" ", "") != expected(scenario).replace(" ", ""):
        raise AssertionError(f"{variant.name} {scenario}: unexpected text {text[:120]!r}")
    return sample


async def measure(base_url: str, database: Path, rounds: int) -> Results:
    settings = Settings(
        database_url=f"sqlite:///{database}",
        base_url=base_url,
        api_key="sk-bench",
        transport="aiohttp",
    )
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    async with (
        await App.open(settings) as app,
        await App.open(settings, store=MemoryStore()) as in_memory,
        aiohttp.ClientSession() as session,
    ):
        ours = Loopwright(app)
        prefix, tools = await ours.by_hand_prefix()
        variants: list[Variant] = [
            ByHand(A, sdk_typed(client), prefix, tools),
            ByHand("(b) SDK raw + json.loads", sdk_raw(client), prefix, tools),
            ByHand(F, floor(session, base_url), prefix, tools),
            ours,
            Loopwright(in_memory, C0),
        ]
        try:
            results: Results = {s: {v.name: [] for v in variants} for s in SCENARIOS}
            for variant in variants:  # warm-up: connections, imports, caches; checks the text
                for scenario in SCENARIOS:
                    await one(variant, scenario)
            for n in range(rounds):
                for scenario in SCENARIOS:
                    for variant in variants[n % 5 :] + variants[: n % 5]:
                        results[scenario][variant.name].append(await one(variant, scenario))
        finally:
            await client.close()
    return results


class CountingStore:
    """Forwards to a store; while `on`, counts each awaited call and its wall time."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.on = False
        self.calls: Counter[str] = Counter()
        self.wall: dict[str, float] = defaultdict(float)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(value):
            return value

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await value(*args, **kwargs)
            finally:
                if self.on:
                    self.calls[name] += 1
                    self.wall[name] += time.perf_counter() - start

        return timed


Mark = tuple[str, float, float]  # what ended, wall, process CPU


async def timeline(app: App, agent: str, text: str) -> list[Mark]:
    """One turn's spans between its events (wall and process CPU at each)."""
    marks: list[Mark] = [("", time.perf_counter(), time.process_time())]

    def mark(what: str) -> None:
        marks.append((what, time.perf_counter(), time.process_time()))

    run = await app.turn(agent, text)
    mark("app.turn() (get_agent)")
    spoken = False
    async for event in run:
        if type(event) is RunStarted:
            mark("run record created")
        elif type(event) is StateEntered:
            mark(f"until {event.state} entered")
        elif type(event) is TextDelta and not spoken:
            spoken = True
            mark("until the first token")
    mark("until the end")
    return marks


async def profile(base_url: str, database: Path, scenario: str, turns: int, memory: bool) -> None:
    """Where a loopwright turn's time goes: spans between events, store calls, pieces alone.

    (cProfile is no help here: its cost is per call, so it inflates call-heavy code such as
    the SDK's request building four times more than the rest.)"""
    from loopwright.adapters.storage.sql import open_store

    settings = Settings(database_url=f"sqlite:///{database}", base_url=base_url, api_key="k")
    store = CountingStore(MemoryStore() if memory else await open_store(settings.database_url))
    timelines: list[list[Mark]] = []
    plain = []
    async with await App.open(settings, store=store) as app:
        ours = Loopwright(app)
        await one(ours, scenario)
        for _ in range(turns):
            await ours.prepare(scenario)
            store.on = True
            timelines.append(await timeline(app, ours.agent, TRIGGERS[scenario]))
            store.on = False
            plain.append(await one(ours, scenario))
        print(f"CPU per turn {_ms(plain, 'cpu')} ms, main thread {_ms(plain, 'main_cpu')} ms")
        print_spans(scenario, timelines, store, turns)
        if not memory:
            await micro_costs(base_url, store._inner, ours.agent)


async def micro_costs(base_url: str, store: Any, agent_id: str, n: int = 300) -> None:
    """CPU µs per call of a turn's pieces, alone in a loop (hot caches: a turn pays more)."""
    from loopwright.adapters.llm.openai_llm import sdk_request_target
    from loopwright.adapters.storage._db import Mode
    from loopwright.adapters.storage._rows import run_row

    record = attrs.evolve((await store.list_runs(limit=1))[0], seq=1 << 40)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0)
    timeout, ids = openai.Timeout(60.0), itertools.count()
    loop, writer = asyncio.get_running_loop(), store._db._sync._writer

    async def append() -> None:
        message = Message(id=f"micro-{next(ids)}", role="user", content="hi")
        await store.append_messages(agent_id, [message])

    async def serialize() -> None:
        run_row(record)

    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "openai_llm.py:sdk_request_target": lambda: sdk_request_target(
            client, "gpt-4o-mini", timeout
        ),
        "_sql_agents.py:SqlAgentStore.get_agent": lambda: store.get_agent(agent_id),
        "_sql_runs.py:SqlRunStore.save": lambda: store.save(record),
        "_sql_agents.py:SqlAgentStore.append_messages (1)": append,
        "_db.py:Database.run (a no-op body)": lambda: store._db.run(bool, Mode.STATEMENT),
        "loop.run_in_executor (a no-op)": lambda: loop.run_in_executor(writer, int),
        "_rows.py:run_row (the record to JSON)": serialize,
    }
    print(f"pieces alone, process CPU µs per call (median of 5 x {n // 5})")
    for name, call in calls.items():
        costs = []
        for _ in range(5):
            start = time.process_time()
            for _ in range(n // 5):
                await call()
            costs.append((time.process_time() - start) / (n // 5))
        print(f"  {statistics.median(costs) * 1e6:7.0f}  {name}")
    await client.close()


def print_spans(
    scenario: str, timelines: Sequence[list[Mark]], store: CountingStore, turns: int
) -> None:
    print(f"'{scenario}' turn, median of {turns}: spans between events, wall / process CPU µs")
    for index, (what, _, _) in enumerate(timelines[0][1:], start=1):
        wall = statistics.median(t[index][1] - t[index - 1][1] for t in timelines)
        cpu = statistics.median(t[index][2] - t[index - 1][2] for t in timelines)
        print(f"  {wall * 1e6:7.0f} {cpu * 1e6:7.0f}  {what}")
    print("store calls per turn, awaited wall time each (µs)")
    for name, count in store.calls.most_common():
        print(f"  {count / turns:4.1f} x {name:16} {store.wall[name] / count * 1e6:7.0f}")


# ---------------------------------------------------------------------------------------------
# Reporting


def _median(samples: Sequence[Sample], field: str) -> float:
    return statistics.median(float(getattr(s, field)) for s in samples)


def _ms(samples: Sequence[Sample], field: str) -> str:
    return f"{_median(samples, field) * 1e3:.2f}"


def report(results: Results, rounds: int, delay: float) -> Ratios:
    """Print the tables; return the ratios checked against the targets."""
    print(
        f"median of {rounds} interleaved rounds; chunks {delay * 1e3:g} ms apart after the first "
        "token; client process CPU (all threads; main thread in brackets); server in a child "
        "process"
    )
    for scenario in SCENARIOS:
        print(f"\n{scenario}: {TRIGGERS[scenario]!r}, {chunk_count(scenario)} chunks")
        print(
            f"{'variant':32} {'CPU ms':>15} {'wall ms':>8} {'1st CPU ms':>10} {'1st wall ms':>11}"
        )
        for name, got in results[scenario].items():
            cpu = f"{_ms(got, 'cpu')} ({_ms(got, 'main_cpu')})"
            print(
                f"{name:32} {cpu:>15} {_ms(got, 'wall'):>8} {_ms(got, 'first_cpu'):>10} "
                f"{_ms(got, 'first_wall'):>11}"
            )
    per_chunk = _per_chunk(results)
    print(f"\nper chunk, marginal: (long - short) / {_chunk_delta()} chunks, median of rounds")
    print(f"{'variant':32} {'CPU µs':>8} {'wall µs':>8}")
    for name, (chunk_cpu, chunk_wall) in per_chunk.items():
        print(f"{name:32} {chunk_cpu:8.1f} {chunk_wall:8.1f}")
    return _ratios(results, per_chunk)


def _chunk_delta() -> int:
    return chunk_count("long") - chunk_count("short")


def _per_chunk(results: Results) -> dict[str, tuple[float, float]]:
    out = {}
    for name, long in results["long"].items():
        pairs = list(zip(long, results["short"][name], strict=True))
        cpu = statistics.median(a.cpu - b.cpu for a, b in pairs) / _chunk_delta()
        wall = statistics.median(a.wall - b.wall for a, b in pairs) / _chunk_delta()
        out[name] = (cpu * 1e6, wall * 1e6)
    return out


def _ratios(results: Results, per_chunk: dict[str, tuple[float, float]]) -> Ratios:
    out: Ratios = {}
    for scenario in ("tool", "short"):
        got = results[scenario]
        for field, label in (
            ("cpu", "per turn CPU"),
            ("wall", "per turn wall"),
            ("first_wall", "first token wall"),
            ("first_cpu", "first token CPU"),
        ):
            base = _median(got[A], field)
            out[f"{label} c/a ({scenario})"] = (
                _median(got[C], field) / base,
                _median(got[C0], field) / base,
            )
    floor_cpu = per_chunk[F][0]
    out["per chunk CPU c/f (long - short)"] = (
        per_chunk[C][0] / floor_cpu,
        per_chunk[C0][0] / floor_cpu,
    )
    return out


TARGETS = {"per turn": 0.5, "first token": 0.7, "per chunk": 2.0}


def print_targets(ratios: Ratios) -> None:
    print("\ntargets: per turn c/a <= 0.5, first token c/a <= 0.7, per chunk c/f <= 2")
    print(f"  {'':36} {'(c)':>6} {'':6}  {'(c0)':>6}")
    for name, (value, memory) in ratios.items():
        limit = next(v for k, v in TARGETS.items() if name.startswith(k))
        verdict = "met" if value <= limit else "MISSED"
        print(f"  {name:36} {value:6.2f} {verdict:6}  {memory:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--delay", type=float, default=0.0003, help="seconds between chunks")
    parser.add_argument("--profile", choices=SCENARIOS, help="profile loopwright turns instead")
    parser.add_argument("--turns", type=int, default=40, help="turns to profile")
    parser.add_argument("--memory", action="store_true", help="profile (c0), not (c)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.delay))
        return
    with (
        tempfile.TemporaryDirectory(prefix="bench-turn-") as folder,
        ServerProcess(args.delay) as base_url,
    ):
        database = Path(folder) / "bench.db"
        if args.profile:
            asyncio.run(profile(base_url, database, args.profile, args.turns, args.memory))
            return
        results = asyncio.run(measure(base_url, database, args.rounds))
    print_targets(report(results, args.rounds, args.delay))


if __name__ == "__main__":
    main()
