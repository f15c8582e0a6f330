"""The encoded stream served by a tiny aiohttp route on loopback, read by the real `openai` SDK.

Scenarios are picked by the request's `model`: fixed event lists, and `agent`, a real agent
loop turn (scripted LLM, in-memory stores). Every body the route sends is linted too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import attrs
import openai
import pytest
from aiohttp import web
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from loopwright.adapters.http.sse import (
    CompletionError,
    KeepAlive,
    collect_completion,
    encode_stream,
)
from loopwright.adapters.tools.python import PythonToolbox
from loopwright.engine import Engine
from loopwright.engine.testing.chunks import (
    CallSpec,
    Response,
    Script,
    text_reply,
    tool_calls_reply,
)
from loopwright.engine.testing.memory import ManualClock, MemoryRunStore, SequentialIds
from loopwright.engine.testing.scripted_llm import ScriptedLLM
from loopwright.engine.validate import load_and_validate
from loopwright.schemas import (
    Agent,
    Block,
    ClientToolCall,
    Event,
    Message,
    RunFailed,
    RunFinished,
    StateEntered,
    TextDelta,
    Usage,
    converter,
)
from loopwright.workflows import registry, workflow_path
from loopwright.workflows.agent.memory_store import MemoryAgentStore
from loopwright.workflows.agent.services import AgentServices
from loopwright.workflows.agent.speech import spoken_text
from loopwright.workflows.agent.turn import TurnData, TurnInput

from .lint import lint_stream

Item = Event | float  # a float: sleep that long (an idle stretch)

SCENARIOS: dict[str, list[Item]] = {
    "text": [
        StateEntered("stream", 2),
        TextDelta("Hello, "),
        Usage(9, 3, 12),
        TextDelta("Ada."),
        Usage(4, 1, 5),
        RunFinished("final"),
    ],
    "slow": [TextDelta("Let me think."), 0.12, TextDelta(" Done."), RunFinished("final")],
    "empty": [StateEntered("stream", 2), RunFinished("final")],
    "tools": [
        TextDelta("Transferring."),
        ClientToolCall(0, "call_x", "transfer_call", '{"to": "desk"}'),
        ClientToolCall(1, "call_y", "end_call", "{}"),
        Usage(5, 5, 10),
        RunFinished("final"),
    ],
    "fail-after-text": [TextDelta("Half a "), RunFailed("stream_error", "the stream broke; retry")],
    "fail-before-text": [RunFailed("rate_limited", "LLM request failed (rate_limited): wait")],
}


async def weather(city: str) -> str:
    """The weather.

    Args:
        city: A city.
    """
    return f"rain in {city}"


@attrs.define
class Served:
    """The running route: its base URL, the bodies it sent, the agent turn's pieces."""

    base_url: str
    bodies: list[bytes] = attrs.field(factory=list)
    script: Script = ()
    agents: MemoryAgentStore | None = None

    def linted(self, include_usage: bool) -> Any:
        assert len(self.bodies) == 1
        return lint_stream(self.bodies[0], include_usage=include_usage)


async def agent_turn(
    served: Served, text: str, client_tools: Sequence[dict[str, Any]] = ()
) -> AsyncIterator[Event]:
    clock, ids = ManualClock(), SequentialIds()
    agents = served.agents = MemoryAgentStore(clock=clock)
    box = PythonToolbox.from_callables([weather])
    services = AgentServices(
        store=agents, llm=ScriptedLLM(served.script), toolbox_for=lambda agent: box
    )
    engine = Engine(store=MemoryRunStore(), services={"agent": services}, clock=clock, ids=ids)
    compiled = load_and_validate(workflow_path(), registry())
    engine.add_workflow(compiled)
    agent = await agents.create_agent(
        Agent(id="agent-1", name="ada", model="gpt-test"), [Block(label="human", value="Ada")]
    )
    turn = TurnInput(
        agent=agent.id,
        messages=(Message(id="msg-in", role="user", content=text),),
        client_tools=tuple(client_tools),
    )
    run = engine.start(
        compiled, converter.unstructure(turn), data=TurnData(agent_id=agent.id), key=agent.id
    )
    try:
        async for event in run:
            yield event
    finally:
        await run.aclose()
        await engine.aclose()


async def scripted(items: Sequence[Item]) -> AsyncIterator[Event]:
    for item in items:
        if isinstance(item, float):
            await asyncio.sleep(item)
        else:
            yield item


def route(served: Served) -> Callable[[web.Request], Any]:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body["model"]
        user = body["messages"][-1]["content"]
        if model == "agent":
            events = agent_turn(served, user, body.get("tools") or ())
        else:
            events = scripted(SCENARIOS[model])
        cid, created = f"chatcmpl-{len(served.bodies) + 1}", 1_700_000_000
        if not body.get("stream"):
            try:
                completion = await collect_completion(events, model=model, id=cid, created=created)
            except CompletionError as err:
                return web.json_response(err.body, status=err.status)
            return web.json_response(completion)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        sent: list[bytes] = []

        async def write(frame: bytes) -> None:
            sent.append(frame)
            await response.write(frame)

        async with KeepAlive(write, interval=0.03) as keep:
            async for frame in encode_stream(
                events, model=model, include_usage=include_usage, id=cid, created=created
            ):
                await keep.send(frame)
        served.bodies.append(b"".join(sent))
        await response.write_eof()
        return response

    return chat


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    app = web.Application()
    runner = web.AppRunner(app, access_log=None)
    state = Served(base_url="")
    app.router.add_post("/v1/chat/completions", route(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def client(served: Served) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=served.base_url, api_key="sk-test", max_retries=0) as sdk:
        yield sdk


USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("model", ["text", "slow"])
async def test_the_sdk_stream_reads_text_final_chunk_and_usage(
    client: AsyncOpenAI, served: Served, model: str
) -> None:
    stream = await client.chat.completions.create(
        model=model,
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    parsed = served.linted(include_usage=True)
    assert text == parsed.text == ("Hello, Ada." if model == "text" else "Let me think. Done.")
    assert finishes[-1] == "stop"
    assert finishes.count("stop") == 1
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == (17 if model == "text" else 0)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.id for c in chunks} == {"chatcmpl-1"}
    if model == "slow":
        assert parsed.pings >= 1  # the idle stretch was kept alive, and the SDK skipped it


@pytest.mark.parametrize(("model", "content"), [("text", "Hello, Ada."), ("empty", "")])
async def test_the_stream_helper_builds_the_final_completion(
    client: AsyncOpenAI, served: Served, model: str, content: str
) -> None:
    async with client.chat.completions.stream(
        model=model,
        messages=USER,
        stream_options={"include_usage": True},
    ) as stream:
        deltas = [e.delta async for e in stream if e.type == "content.delta"]
        final = await stream.get_final_completion()
    served.linted(include_usage=True)
    choice = final.choices[0]
    assert (choice.message.content or "") == "".join(deltas) == content
    assert choice.finish_reason == "stop"
    assert final.usage is not None


async def test_the_stream_helper_reassembles_client_tool_calls(
    client: AsyncOpenAI, served: Served
) -> None:
    async with client.chat.completions.stream(model="tools", messages=USER) as stream:
        final = await stream.get_final_completion()
    served.linted(include_usage=False)
    message = final.choices[0].message
    calls = [
        (c.id, c.function.name, json.loads(c.function.arguments))
        for c in message.tool_calls or []
        if c.type == "function"
    ]
    assert calls == [("call_x", "transfer_call", {"to": "desk"}), ("call_y", "end_call", {})]
    assert message.content == "Transferring."
    assert final.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("model", ["fail-after-text", "fail-before-text"])
async def test_the_error_frame_raises_api_error_with_its_message(
    client: AsyncOpenAI, served: Served, model: str
) -> None:
    stream = await client.chat.completions.create(model=model, messages=USER, stream=True)
    text = ""

    async def read() -> None:
        nonlocal text
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""

    with pytest.raises(openai.APIError) as info:
        await read()
    parsed = served.linted(include_usage=False)
    assert parsed.error is not None
    assert info.value.message == parsed.error["message"]
    assert text == parsed.text == ("Half a " if model == "fail-after-text" else "")
    with pytest.raises(openai.APIError) as helper_info:
        async with client.chat.completions.stream(model=model, messages=USER) as helper:
            await helper.get_final_completion()
    assert helper_info.value.message == info.value.message


async def test_non_streaming_requests_get_a_completion_or_an_error_status(
    client: AsyncOpenAI,
) -> None:
    completion = await client.chat.completions.create(model="tools", messages=USER)
    assert completion.choices[0].message.content == "Transferring."
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 10
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="fail-before-text", messages=USER)
    assert info.value.status_code == 429
    assert info.value.code == "rate_limited"


def weather_call() -> CallSpec:
    args = {"pre_exec_msg": "Checking.", "city": "Oslo"}
    return CallSpec(id="call_1", name="weather", arguments=json.dumps(args))


@pytest.mark.parametrize(
    "script",
    [
        [text_reply("Hello there, Ada.", parts=3)],
        [tool_calls_reply([weather_call()], fragments=4), text_reply("It rains in Oslo.")],
    ],
    ids=["text", "agent-tool"],
)
async def test_a_real_agent_turn_reaches_the_sdk_as_stored(
    client: AsyncOpenAI, served: Served, script: list[Response]
) -> None:
    served.script = script
    async with client.chat.completions.stream(
        model="agent",
        messages=[{"role": "user", "content": "weather?"}],
        stream_options={"include_usage": True},
    ) as stream:
        final = await stream.get_final_completion()
    parsed = served.linted(include_usage=True)
    assert served.agents is not None
    log = await served.agents.list_messages("agent-1")
    # I6: what the client received is what was stored; the agent's own tool call stays hidden.
    assert final.choices[0].message.content == parsed.text == spoken_text(log)
    assert parsed.text
    assert final.choices[0].message.tool_calls in (None, [])
    assert parsed.finish_reason == "stop"
    assert final.usage is not None
    assert final.usage.total_tokens == (15 if len(script) == 1 else 45)


END_CALL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "end_call",
        "description": "Hang up.",
        "parameters": {"type": "object", "properties": {}},
    },
}


async def test_a_client_tool_call_of_a_real_agent_turn_reaches_the_sdk(
    client: AsyncOpenAI, served: Served
) -> None:
    hang_up = CallSpec(id="call_end", name="end_call", arguments="{}")
    served.script = [tool_calls_reply([weather_call(), hang_up], text="Bye.")]
    async with client.chat.completions.stream(
        model="agent",
        messages=[{"role": "user", "content": "weather, then hang up"}],
        tools=[END_CALL],  # type: ignore[list-item]
    ) as stream:
        final = await stream.get_final_completion()
    parsed = served.linted(include_usage=False)
    assert served.agents is not None
    log = await served.agents.list_messages("agent-1")
    message = final.choices[0].message
    calls = [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []]
    # Only the client's call reaches it; the agent's own ran here and stays hidden.
    assert calls == [("call_end", "end_call", "{}")]
    assert final.choices[0].finish_reason == parsed.finish_reason == "tool_calls"
    assert message.content == parsed.text == spoken_text(log) == "Bye. Checking."
    assert [m.role for m in log] == ["user", "assistant", "tool"]
    assert [c.id for c in log[1].tool_calls] == ["call_1", "call_end"]
