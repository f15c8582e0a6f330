"""What the agent loop's handlers share: the turn's input, the context, the request body, and
storing a step cut off by a barge-in."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from loopwright.engine import RunContext
from loopwright.schemas import Message, ToolCall, converter

from .client_tools import client_names, offered_client_tools, turn_inputs
from .request import build_request
from .services import AgentServices, CachedContext
from .turn import TurnData, TurnInput

_log = logging.getLogger("loopwright.agent")


def services(ctx: RunContext) -> AgentServices:
    """The loop's injected services."""
    svc: AgentServices = ctx.service("agent")
    return svc


def turn_of(ctx: RunContext) -> TurnInput:
    """The turn's input, structured."""
    inputs = ctx.inputs
    if isinstance(inputs, TurnInput):
        return inputs
    return converter.structure(inputs, TurnInput)


def client_tools_of(ctx: RunContext) -> Sequence[Mapping[str, Any]]:
    """The client's `tools` entries (read without structuring the whole input, once a step)."""
    inputs = ctx.inputs
    if isinstance(inputs, TurnInput):
        return inputs.client_tools
    tools: Sequence[Mapping[str, Any]] = inputs.get("client_tools") or ()
    return tools


async def cached(svc: AgentServices, agent_id: str) -> CachedContext:
    """The agent's cached context (loaded once for a step driven in another process)."""
    found = svc.cached(agent_id)
    if found is None:
        found = await svc.context(await svc.store.get_agent(agent_id))
    return found


async def client_tool_names(ctx: RunContext, data: TurnData) -> frozenset[str]:
    """Names of the tools whose calls go back to the client this turn."""
    entries = client_tools_of(ctx)
    if not entries:
        return frozenset()
    svc = services(ctx)
    agent = (await cached(svc, data.agent_id)).context.agent
    return client_names(entries, svc.own_tool_names(agent))


async def inputs_of(ctx: RunContext, data: TurnData) -> tuple[Message, ...]:
    """The turn's input as stored and sent (worked out by rebuild_memory at step 0)."""
    if data.inputs is not None:
        return data.inputs
    context = (await cached(services(ctx), data.agent_id)).context.messages
    return turn_inputs(context, turn_of(ctx).messages, run_id=ctx.run_id, now=ctx.clock.now())


async def request_body(ctx: RunContext, data: TurnData, *, warn: bool = False) -> dict[str, Any]:
    """This step's chat.completions body: system, context, the turn's new input, tools.

    `warn`: log the client tools dropped for a name clash (once a turn: at its first request).
    """
    svc = services(ctx)
    found = await cached(svc, data.agent_id)
    agent = found.context.agent
    tools: list[Mapping[str, Any]] = list(svc.tools_payload(agent, ctx.params))
    entries = client_tools_of(ctx)
    if entries:
        offered, clashes = offered_client_tools(entries, svc.own_tool_names(agent))
        if clashes and warn:
            _log.warning(
                "run %s: the client's tools %s share names with the agent's own tools: the "
                "agent's are offered and run, the client's are left out (rename them)",
                ctx.run_id,
                sorted(set(clashes)),
            )
        tools.extend(offered)
    extra: Sequence[Message] = ()
    if data.step == 0:
        known = {m.id for m in found.context.messages}
        extra = [m for m in await inputs_of(ctx, data) if m.id not in known]
    return build_request(
        model=agent.model,
        system=found.system,
        context=found.wire,
        extra=extra,
        tools=tools,
        params=ctx.params,
    )


async def settle_input_write(svc: AgentServices, run_id: str, inputs: Sequence[Message]) -> None:
    """Wait for the turn's overlapped input write and fold it into the context cache."""
    write = svc.input_writes.pop(run_id, None)
    if write is not None:
        svc.appended(await write, inputs)


def assistant(
    ctx: RunContext,
    data: TurnData,
    text: str,
    calls: Sequence[ToolCall],
    *,
    incomplete: bool = False,
) -> Message:
    """This step's assistant message."""
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


def tool_message(ctx: RunContext, data: TurnData, call: ToolCall, content: str) -> Message:
    """The tool message answering `call`."""
    return Message(
        id=ctx.ids.new_id("msg"),
        role="tool",
        content=content,
        tool_call_id=call.id,
        name=call.name,
        run_id=ctx.run_id,
        step=data.step,
        created_at=ctx.clock.now(),
    )


async def store_now(ctx: RunContext, data: TurnData, messages: Sequence[Message]) -> None:
    """Store this step's messages now, with the turn's input first at step 0: a step a
    barge-in cut off (the caller shields this from the cancellation), so the next turn runs on
    what the client heard; or the assistant message recording the intent to run its calls."""
    svc = services(ctx)
    inputs = await inputs_of(ctx, data) if data.step == 0 else ()
    await settle_input_write(svc, ctx.run_id, inputs)
    batch = [*inputs, *messages]
    if batch:
        agent = await svc.store.append_messages(data.agent_id, batch)
        svc.appended(agent, batch)
