"""The agent loop's state handlers: rebuild_memory, request, stream, execute_tools, persist."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs

from loopwright.engine import Outcome, RunContext, handler
from loopwright.schemas import Message, ToolCall, ToolCallStarted, ToolResult

from ._common import (
    cached,
    client_tool_names,
    inputs_of,
    request_body,
    services,
    settle_input_write,
    store_now,
    tool_message,
    turn_of,
)
from .client_tools import split_calls, turn_inputs
from .services import AgentServices
from .streaming import stream
from .tools import ToolRun
from .turn import TurnData

__all__ = ["execute_tools", "persist", "rebuild_memory", "request", "stream"]

_log = logging.getLogger("loopwright.agent")


@handler(outcomes=["next"])
async def rebuild_memory(ctx: RunContext) -> Outcome:
    """Resolve the agent and its context (reloaded only when the agent's version moved).

    At the first step the turn's input is worked out (answers to the client calls the last
    turn left open come first) and starts being stored, overlapped with the wait for the
    first token; persist waits for that write before its own.
    """
    svc, data = services(ctx), ctx.data
    if data.step > 0 and svc.cached(data.agent_id) is not None:
        return Outcome("next")
    turn = turn_of(ctx)
    agent = svc.fresh(ctx.run_id) or await svc.store.get_agent(data.agent_id or turn.agent)
    found = await svc.context(agent)
    new = attrs.evolve(data, agent_id=agent.id)
    if data.step == 0:
        inputs = data.inputs
        if inputs is None:
            context = found.context.messages
            inputs = turn_inputs(context, turn.messages, run_id=ctx.run_id, now=ctx.clock.now())
        new = attrs.evolve(new, inputs=inputs)
        if inputs and ctx.run_id not in svc.input_writes:
            _write_inputs(svc, ctx.run_id, agent.id, inputs)
    return Outcome("next", data=new)


def _write_inputs(
    svc: AgentServices, run_id: str, agent_id: str, inputs: Sequence[Message]
) -> None:
    task = asyncio.ensure_future(svc.store.append_messages(agent_id, inputs))
    svc.input_writes[run_id] = task
    # A failed write is not kept around (persist writes the input again, idempotently).
    task.add_done_callback(lambda _: _drop_write(svc, run_id, task))


def _drop_write(svc: AgentServices, run_id: str, task: asyncio.Task[Any]) -> None:
    if svc.input_writes.get(run_id) is task and (task.cancelled() or task.exception()):
        del svc.input_writes[run_id]


@handler(outcomes=["next"])
async def request(ctx: RunContext) -> Outcome:
    """Build this step's chat.completions body (kept in memory only, never checkpointed)."""
    data: TurnData = ctx.data
    body = await request_body(ctx, data, warn=data.step == 0)
    return Outcome("next", data=attrs.evolve(data, request=body))


@handler(outcomes=["next"])
async def execute_tools(ctx: RunContext) -> AsyncIterator[Any]:
    """Run the agent's own calls (concurrently) and answer every one, errors included; the
    client's calls are not run here (the stream sent them to the client).

    A non-idempotent call runs at most once, crashes included: see `_lost_calls`. A barge-in
    stores the step at once, with an answer for every call (the result of a call that
    finished, an error for the others), so the next turn runs on a valid context.
    """
    svc, data = services(ctx), ctx.data
    message = data.assistant
    assert message is not None, "execute_tools runs after stream made an assistant message"
    agent = (await cached(svc, data.agent_id)).context.agent
    own, _ = split_calls(message.tool_calls, await client_tool_names(ctx, data))
    once = svc.once_tools(agent)
    step = ToolRun(own)
    try:
        step.mark_lost(await _lost_calls(ctx, data, [c for c in own if c.name in once]))
        for call in own:
            yield ToolCallStarted(call.id, call.name, call.arguments)
        await step.run(svc.toolbox(agent))
        for call, output, _ in step.answers():
            yield ToolResult(call.id, call.name, output.status, output.content)
    except (GeneratorExit, asyncio.CancelledError):
        await asyncio.shield(store_now(ctx, data, [message, *_answers(ctx, data, step)]))
        raise
    yield Outcome("next", data=attrs.evolve(data, tool_messages=tuple(_answers(ctx, data, step))))


async def _lost_calls(ctx: RunContext, data: TurnData, once: Sequence[ToolCall]) -> list[str]:
    """Record the intent to run the step's non-idempotent calls, or find that an earlier
    attempt did: the ids of the calls whose result a crash lost (they must not run again).

    The record is the step's assistant message, stored (idempotently, after the turn's input)
    before any of them starts; their results are only ever stored after it. So an attempt
    that finds it stored follows one that may have run them and died before its checkpoint.
    No write for a step without such calls, and no read on a first attempt in the process
    that streamed the calls.
    """
    svc, message = services(ctx), data.assistant
    if message is None:
        return []
    first = svc.first_attempt(ctx.run_id, message.id)
    if not once:
        return []
    recorded = not first and bool(await svc.store.find_messages(data.agent_id, ids=[message.id]))
    if not recorded:
        await store_now(ctx, data, [message])
        return []
    lost = [call.id for call in once]
    _log.warning(
        "run %s: the results of %s were lost in a crash; the model is told, the calls are not "
        "run again (their tools are not idempotent)",
        ctx.run_id,
        lost,
    )
    return lost


def _answers(ctx: RunContext, data: TurnData, step: ToolRun) -> list[Message]:
    return [tool_message(ctx, data, call, content) for call, _, content in step.answers()]


@handler(outcomes=["continue", "done"])
async def persist(ctx: RunContext) -> Outcome:
    """Store this step's messages in one transaction (idempotent by id), then decide: go on
    after the agent's own tool results, end after a reply, a failure or client calls."""
    svc, data = services(ctx), ctx.data
    inputs = await inputs_of(ctx, data) if data.step == 0 else ()
    await settle_input_write(svc, ctx.run_id, inputs)
    batch: list[Message] = list(inputs)
    if data.assistant is not None:
        batch.append(data.assistant)
    batch.extend(data.tool_messages)
    if batch:
        agent = await svc.store.append_messages(data.agent_id, batch)
        svc.appended(agent, batch)
    more = bool(data.tool_messages) and not data.failed and not data.client_calls
    new = attrs.evolve(data, step=data.step + 1, assistant=None, tool_messages=(), request=None)
    return Outcome("continue" if more else "done", data=new)
