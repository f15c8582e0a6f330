"""The agent loop's state handlers: rebuild_memory, request, stream, execute_tools, persist."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

import attrs

from loopwright.engine import LLMError, Outcome, RunContext, handler
from loopwright.schemas import (
    ErrorInfo,
    Message,
    TextDelta,
    ToolCall,
    ToolCallStarted,
    ToolResult,
    Usage,
    converter,
)

from .fold import FoldResult, StreamFold
from .partial_json import KeyStreamer
from .request import build_request
from .services import AgentServices, CachedContext
from .speech import SpeechJoiner
from .tool_schema import PRE_EXEC_KEY
from .tools import run_calls
from .turn import TurnData, TurnInput, TurnUsage


def _services(ctx: RunContext) -> AgentServices:
    svc: AgentServices = ctx.service("agent")
    return svc


def _turn(ctx: RunContext) -> TurnInput:
    inputs = ctx.inputs
    if isinstance(inputs, TurnInput):
        return inputs
    return converter.structure(inputs, TurnInput)


@handler(outcomes=["next"])
async def rebuild_memory(ctx: RunContext) -> Outcome:
    """Resolve the agent and its context (reloaded only when the agent's version moved).

    At the first step the turn's input messages start being stored, overlapped with the
    wait for the first token; persist waits for that write before its own.
    """
    svc, data = _services(ctx), ctx.data
    if data.step > 0 and svc.cached(data.agent_id) is not None:
        return Outcome("next")
    turn = _turn(ctx)
    agent = svc.fresh(ctx.run_id) or await svc.store.get_agent(data.agent_id or turn.agent)
    await svc.context(agent)
    if data.step == 0 and turn.messages and ctx.run_id not in svc.input_writes:
        task = asyncio.ensure_future(svc.store.append_messages(agent.id, turn.messages))
        svc.input_writes[ctx.run_id] = task
        # A failed write is not kept around (persist writes the input again, idempotently).
        task.add_done_callback(lambda _: _drop_write(svc, ctx.run_id, task))
    return Outcome("next", data=attrs.evolve(data, agent_id=agent.id))


def _drop_write(svc: AgentServices, run_id: str, task: asyncio.Task[Any]) -> None:
    if svc.input_writes.get(run_id) is task and (task.cancelled() or task.exception()):
        del svc.input_writes[run_id]


async def _cached(svc: AgentServices, agent_id: str) -> CachedContext:
    cached = svc.cached(agent_id)
    if cached is None:  # a step driven in another process (advance): load once
        cached = await svc.context(await svc.store.get_agent(agent_id))
    return cached


def _new_inputs(turn: TurnInput, cached: CachedContext, step: int) -> Sequence[Message]:
    if step > 0 or not turn.messages:
        return ()
    known = {m.id for m in cached.context.messages}
    return [m for m in turn.messages if m.id not in known]


async def _request_body(ctx: RunContext, data: TurnData) -> dict[str, Any]:
    svc = _services(ctx)
    cached = await _cached(svc, data.agent_id)
    turn = _turn(ctx)
    agent = cached.context.agent
    tools = [*svc.tools_payload(agent, ctx.params), *turn.client_tools]
    return build_request(
        model=agent.model,
        system=cached.system,
        context=cached.wire,
        extra=_new_inputs(turn, cached, data.step),
        tools=tools,
        params=ctx.params,
    )


@handler(outcomes=["next"])
async def request(ctx: RunContext) -> Outcome:
    """Build this step's chat.completions body (kept in memory only, never checkpointed)."""
    body = await _request_body(ctx, ctx.data)
    return Outcome("next", data=attrs.evolve(ctx.data, request=body))


@handler(outcomes=["tool_calls", "reply", "failed"])
async def stream(ctx: RunContext) -> AsyncIterator[Any]:
    """Stream the model's answer: text deltas out at once, pre-exec speech as it arrives.

    An error before any output is raised (the state's retry policy applies); after output
    the partial text is kept, marked incomplete, and the turn goes on to persist it.
    """
    svc, data = _services(ctx), ctx.data
    body = data.request or await _request_body(ctx, data)
    fold = StreamFold()
    speech = SpeechJoiner(data.spoken)
    pre_exec = bool(ctx.params.get("pre_exec_msg", True))
    readers: dict[int, KeyStreamer] = {}
    try:
        async with aclosing(svc.llm.stream(body)) as chunks:
            async for chunk in chunks:
                text = fold.add(chunk)
                if text:
                    yield TextDelta(speech.content(text))
                if pre_exec and fold.fragments:
                    for position, fragment in fold.fragments:
                        reader = readers.get(position)
                        if reader is None:
                            reader = readers[position] = KeyStreamer(PRE_EXEC_KEY)
                        piece = reader.feed(fragment)
                        if piece:
                            yield TextDelta(speech.pre_exec(position, piece))
    except (GeneratorExit, asyncio.CancelledError):
        # Barge-in: the client stopped listening. Keep what it heard, so the next turn's
        # model knows where it was cut off.
        if speech.step_text:
            await asyncio.shield(_store_heard(ctx, data, speech))
        raise
    except LLMError as err:
        if not speech.step_text:
            # The turn may end here (retries exhausted): its input is stored before it does.
            await _settle_input_write(svc, ctx.run_id, _turn(ctx))
            raise
        yield _failed(ctx, data, fold, speech, err)
        return
    result = fold.result()
    if result.usage:
        yield _usage_event(result.usage)
    yield _streamed(ctx, data, result, speech)


def _assistant(
    ctx: RunContext,
    data: TurnData,
    text: str,
    calls: Sequence[ToolCall],
    *,
    incomplete: bool = False,
) -> Message:
    return Message(
        id=ctx.ids.new_id("msg"),
        role="assistant",
        content=text or None if calls else text,
        tool_calls=tuple(calls),
        run_id=ctx.run_id,
        step=data.step,
        incomplete=incomplete,
        created_at=ctx.clock.now(),
    )


async def _store_heard(ctx: RunContext, data: TurnData, speech: SpeechJoiner) -> None:
    svc, turn = _services(ctx), _turn(ctx)
    await _settle_input_write(svc, ctx.run_id, turn)
    batch = [
        *(turn.messages if data.step == 0 else ()),
        _assistant(ctx, data, speech.step_said, (), incomplete=True),
    ]
    agent = await svc.store.append_messages(data.agent_id, batch)
    svc.appended(agent, batch)


def _streamed(ctx: RunContext, data: TurnData, result: FoldResult, speech: SpeechJoiner) -> Outcome:
    text = result.text + (result.refusal or "")
    message = _assistant(ctx, data, text, result.tool_calls)
    usage = _add_usage(data.usage, result.usage)
    new = attrs.evolve(data, assistant=message, spoken=speech.turn_text, usage=usage, request=None)
    return Outcome(result.outcome, data=new)


def _failed(
    ctx: RunContext, data: TurnData, fold: StreamFold, speech: SpeechJoiner, err: LLMError
) -> Outcome:
    # Calls whose arguments were cut off cannot run; keep the text the client heard,
    # pre-exec speech included, as the message content.
    message = _assistant(ctx, data, speech.step_said, (), incomplete=True)
    new = attrs.evolve(data, assistant=message, spoken=speech.turn_text, failed=True, request=None)
    error = ErrorInfo(code=err.code, message=err.message, retryable=err.retryable)
    return Outcome("failed", data=new, error=error)


def _usage_event(usage: Any) -> Usage:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return Usage(prompt, completion, int(usage.get("total_tokens") or prompt + completion))


def _add_usage(total: TurnUsage, usage: Any) -> TurnUsage:
    if not usage:
        return attrs.evolve(total, requests=total.requests + 1)
    event = _usage_event(usage)
    return TurnUsage(
        prompt_tokens=total.prompt_tokens + event.prompt_tokens,
        completion_tokens=total.completion_tokens + event.completion_tokens,
        total_tokens=total.total_tokens + event.total_tokens,
        requests=total.requests + 1,
    )


@handler(outcomes=["next"])
async def execute_tools(ctx: RunContext) -> AsyncIterator[Any]:
    """Run every call (concurrently) and answer every call id, errors included."""
    svc, data = _services(ctx), ctx.data
    assert data.assistant is not None
    calls = data.assistant.tool_calls
    cached = await _cached(svc, data.agent_id)
    toolbox = svc.toolbox(cached.context.agent)
    for call in calls:
        yield ToolCallStarted(call.id, call.name, call.arguments)
    outputs = await run_calls(toolbox, calls, ctx.params)
    messages = []
    for call, output, content in outputs:
        messages.append(
            Message(
                id=ctx.ids.new_id("msg"),
                role="tool",
                content=content,
                tool_call_id=call.id,
                name=call.name,
                run_id=ctx.run_id,
                step=data.step,
                created_at=ctx.clock.now(),
            )
        )
        yield ToolResult(call.id, call.name, output.status, output.content)
    yield Outcome("next", data=attrs.evolve(data, tool_messages=tuple(messages)))


async def _settle_input_write(svc: AgentServices, run_id: str, turn: TurnInput) -> None:
    """Wait for the turn's overlapped input write and fold it into the context cache."""
    write = svc.input_writes.pop(run_id, None)
    if write is not None:
        svc.appended(await write, turn.messages)


@handler(outcomes=["continue", "done"])
async def persist(ctx: RunContext) -> Outcome:
    """Store this step's messages in one transaction (idempotent by id), then decide."""
    svc, data = _services(ctx), ctx.data
    turn = _turn(ctx)
    await _settle_input_write(svc, ctx.run_id, turn)
    batch: list[Message] = list(turn.messages) if data.step == 0 else []
    if data.assistant is not None:
        batch.append(data.assistant)
    batch.extend(data.tool_messages)
    if batch:
        agent = await svc.store.append_messages(data.agent_id, batch)
        svc.appended(agent, batch)
    more = bool(data.tool_messages) and not data.failed
    new = attrs.evolve(data, step=data.step + 1, assistant=None, tool_messages=(), request=None)
    return Outcome("continue" if more else "done", data=new)
