"""The `stream` state: the model's answer streamed out as it arrives (the per-chunk path)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import aclosing
from typing import Any

import attrs

from loopwright.engine import LLMError, Outcome, RunContext, handler
from loopwright.schemas import ClientToolCall, ErrorInfo, Message, TextDelta, ToolCall, Usage

from ._common import (
    assistant,
    client_tool_names,
    inputs_of,
    request_body,
    services,
    settle_input_write,
    store_now,
    tool_message,
)
from .client_tools import split_calls
from .fold import FoldResult, StreamFold
from .partial_json import KeyStreamer
from .speech import SpeechJoiner
from .tool_schema import PRE_EXEC_KEY
from .tools import ToolRun
from .turn import TurnData, TurnUsage


def _reader(fold: StreamFold, position: int, client: Collection[str]) -> KeyStreamer | None:
    # A client tool's arguments are the client's business: none of them is spoken here.
    return None if fold.name_of(position) in client else KeyStreamer(PRE_EXEC_KEY)


@handler(outcomes=["tool_calls", "client_calls", "reply", "failed"])
async def stream(ctx: RunContext) -> AsyncIterator[Any]:
    """Stream the model's answer: text deltas out at once, pre-exec speech as it arrives, then
    the calls of the client's tools (`client_calls` when the step made only those).

    An error before any output is raised (the state's retry policy applies); after output
    the partial text is kept, marked incomplete, and the turn goes on to persist it.
    """
    svc, data = services(ctx), ctx.data
    body = data.request or await request_body(ctx, data)
    client = await client_tool_names(ctx, data)
    fold = StreamFold()
    speech = SpeechJoiner(data.spoken)
    pre_exec = bool(ctx.params.get("pre_exec_msg", True))
    readers: dict[int, KeyStreamer | None] = {}
    try:
        async with aclosing(svc.llm.stream(body)) as chunks:
            async for chunk in chunks:
                text = fold.add(chunk)
                if text:
                    yield TextDelta(speech.content(text))
                if pre_exec and fold.fragments:
                    for position, fragment in fold.fragments:
                        if position not in readers:
                            readers[position] = _reader(fold, position, client)
                        reader = readers[position]
                        piece = reader.feed(fragment) if reader is not None else ""
                        if piece:
                            yield TextDelta(speech.pre_exec(position, piece))
    except (GeneratorExit, asyncio.CancelledError):
        # Barge-in: the client stopped listening. Keep what it heard, so the next turn's
        # model knows where it was cut off.
        await asyncio.shield(_store_heard(ctx, data, speech))
        raise
    except LLMError as err:
        if not speech.step_text:
            # The turn may end here (retries exhausted): its input is stored before it does.
            await settle_input_write(svc, ctx.run_id, await inputs_of(ctx, data))
            raise
        yield _failed(ctx, data, speech, err)
        return
    result = fold.result()
    message = assistant(ctx, data, result.text + (result.refusal or ""), result.tool_calls)
    own, theirs = split_calls(result.tool_calls, client)
    try:
        for index, call in enumerate(theirs):
            yield ClientToolCall(index, call.id, call.name, call.arguments)
        if result.usage:
            yield _usage_event(result.usage)
    except (GeneratorExit, asyncio.CancelledError):
        # The answer is whole: store it as the turn would have, no call of the agent's run.
        step = [message, *_cut_off(ctx, data, own)]
        await asyncio.shield(store_now(ctx, data, step))
        raise
    if own:
        svc.streamed(ctx.run_id, message.id)
    yield _streamed(data, message, result, speech, own=own, theirs=theirs)


async def _store_heard(ctx: RunContext, data: TurnData, speech: SpeechJoiner) -> None:
    if not speech.step_text:
        # Nothing heard, nothing to keep; the input write is still waited for, so a turn never
        # leaves it behind (the server may discard the turn next: `discard_turn`).
        await settle_input_write(services(ctx), ctx.run_id, await inputs_of(ctx, data))
        return
    heard = assistant(ctx, data, speech.step_said, (), incomplete=True)
    await store_now(ctx, data, [heard])


def _cut_off(ctx: RunContext, data: TurnData, calls: Sequence[ToolCall]) -> list[Message]:
    return [tool_message(ctx, data, c, content) for c, _, content in ToolRun(calls).answers()]


def _streamed(
    data: TurnData,
    message: Message,
    result: FoldResult,
    speech: SpeechJoiner,
    *,
    own: Sequence[ToolCall],
    theirs: Sequence[ToolCall],
) -> Outcome:
    new = attrs.evolve(
        data,
        assistant=message,
        spoken=speech.turn_text,
        usage=_add_usage(data.usage, result.usage),
        client_calls=bool(theirs),
        request=None,
    )
    return Outcome("tool_calls" if own else "client_calls" if theirs else "reply", data=new)


def _failed(ctx: RunContext, data: TurnData, speech: SpeechJoiner, err: LLMError) -> Outcome:
    # Calls whose arguments were cut off cannot run; keep the text the client heard,
    # pre-exec speech included, as the message content.
    message = assistant(ctx, data, speech.step_said, (), incomplete=True)
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
