"""At most once across a crash: a non-idempotent call whose intent is recorded is never run
again; its result, lost with the process, is an error the model can act on.

A crash is simulated in-process by a `BaseException` nothing below the test catches (the run is
left `running`, as after a SIGKILL); a new engine with fresh services on the same stores then
resumes it, as a new process would. tests/reliability/ does the same with real SIGKILLs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from loopwright.adapters.tools.python import PythonToolbox, tool
from loopwright.engine import Engine, Run
from loopwright.engine.testing.chunks import CallSpec, text_reply, tool_calls_reply
from loopwright.schemas import Message, RunFinished, ToolOutput, ToolResult
from loopwright.workflows.agent.invariants import check_log
from loopwright.workflows.agent.services import AgentServices
from loopwright.workflows.agent.tools import LOST, envelope

from .conftest import Loop, collect

EFFECTS: list[str] = []
"""Side effects, one entry per tool execution."""
CRASH: set[str] = set()
"""Tokens whose next execution kills the process (once each)."""


class Crash(BaseException):
    """The process dies here: nothing in the loop or the engine catches it."""


async def charge(token: str) -> str:
    """Charge a card (not idempotent: runs at most once per call).

    Args:
        token: Identifies the charge.
    """
    EFFECTS.append(f"charge {token}")
    if token in CRASH:
        CRASH.discard(token)
        raise Crash(token)
    return f"charged {token}"


@tool(idempotent=True)
async def lookup(token: str) -> str:
    """Look something up (idempotent: may run again after a crash).

    Args:
        token: What to look up.
    """
    EFFECTS.append(f"lookup {token}")
    if token in CRASH:
        CRASH.discard(token)
        raise Crash(token)
    return f"found {token}"


TOOLS = (charge, lookup)


def call(call_id: str, name: str, token: str) -> CallSpec:
    return CallSpec(id=call_id, name=name, arguments=json.dumps({"token": token}))


@pytest.fixture(autouse=True)
def _clean() -> None:
    EFFECTS.clear()
    CRASH.clear()


def restarted(loop: Loop) -> Engine:
    """A new process on the same stores and LLM: fresh services and caches, random ids."""
    box = PythonToolbox.from_callables(list(TOOLS))
    services = AgentServices(store=loop.agents, llm=loop.llm, toolbox_for=lambda _: box)
    engine = Engine(store=loop.engine.store, services={"agent": services}, clock=loop.engine.clock)
    engine.add_workflow(loop.compiled)
    return engine


async def crash(run: Run) -> None:
    with pytest.raises(Crash):
        await collect(run)
    record = await run._engine.store.load(run.id)
    assert record is not None and record.status == "running"


async def assert_valid(loop: Loop) -> Sequence[Message]:
    log = await loop.log()
    context = (await loop.agents.load_context(loop.agent.id)).messages
    assert check_log(log, context) == []
    return log


def tool_contents(log: Sequence[Message]) -> dict[str, str]:
    return {m.tool_call_id or "": m.content or "" for m in log if m.role == "tool"}


LOST_RESULT = envelope(ToolOutput(status="error", content=LOST))


@pytest.mark.parametrize("sqlite", [False, True], ids=["memory", "sqlite"])
async def test_a_lost_non_idempotent_call_is_not_run_again_and_the_model_is_told(
    make_loop: Any, sqlite: bool
) -> None:
    script = [
        tool_calls_reply([call("call_1", "charge", "t1")]),
        text_reply("It may or may not have gone through."),
    ]
    loop = await make_loop(script, sqlite=sqlite, tools=TOOLS)
    CRASH.add("t1")
    run = loop.turn("pay")
    await crash(run)
    assert EFFECTS == ["charge t1"]
    log = await loop.log()
    assert [m.role for m in log] == ["user", "assistant"]  # the intent, recorded before the call

    events = await collect(await restarted(loop).resume(run.id))
    assert events[-1] == RunFinished("final")
    assert EFFECTS == ["charge t1"]  # not run again
    assert ToolResult("call_1", "charge", "error", LOST) in events
    log = await assert_valid(loop)
    assert [m.role for m in log] == ["user", "assistant", "tool", "assistant"]
    assert tool_contents(log) == {"call_1": LOST_RESULT}
    assert "lost in a crash" in LOST and "may or may not" in LOST
    # The model saw it: the request after the crash ends with that tool message.
    assert loop.llm.requests[-1]["messages"][-1]["content"] == LOST_RESULT


async def test_idempotent_calls_run_again_beside_a_lost_one(make_loop: Any) -> None:
    calls = [call("call_a", "lookup", "a"), call("call_b", "charge", "b")]
    loop = await make_loop([tool_calls_reply(calls), text_reply("Done.")], tools=TOOLS)
    CRASH.add("a")  # the lookup kills the process; the charge ran beside it
    run = loop.turn("both")
    await crash(run)
    assert sorted(EFFECTS) == ["charge b", "lookup a"]

    events = await collect(await restarted(loop).resume(run.id))
    assert events[-1] == RunFinished("final")
    assert sorted(EFFECTS) == ["charge b", "lookup a", "lookup a"]
    log = await assert_valid(loop)
    assert tool_contents(log) == {"call_a": "found a", "call_b": LOST_RESULT}
    assert [m.tool_call_id for m in log if m.role == "tool"] == ["call_a", "call_b"]


async def test_an_idempotent_step_records_no_intent_and_reruns(make_loop: Any) -> None:
    loop = await make_loop(
        [tool_calls_reply([call("call_a", "lookup", "a")]), text_reply("Found.")], tools=TOOLS
    )
    CRASH.add("a")
    run = loop.turn("look")
    await crash(run)
    assert [m.role for m in await loop.log()] == ["user"]  # no extra write for it

    await collect(await restarted(loop).resume(run.id))
    assert EFFECTS == ["lookup a", "lookup a"]
    log = await assert_valid(loop)
    assert tool_contents(log) == {"call_a": "found a"}


async def test_a_crash_after_the_checkpoint_but_before_the_intent_runs_the_call_once(
    make_loop: Any,
) -> None:
    # Driven one state at a time (an orchestrator's `advance`): the process that streamed the
    # calls is gone before execute_tools; no intent was recorded, so the call runs, once.
    loop = await make_loop(
        [tool_calls_reply([call("call_1", "charge", "t1")]), text_reply("Charged.")], tools=TOOLS
    )
    run = loop.turn("pay")
    first = loop.engine
    await first.store.create(run.record)  # what an orchestrator does before its first step
    seq = 0
    while (record := await first.advance(run.id, seq)).state != "execute_tools":
        seq = record.seq
    await asyncio.gather(*loop.services.input_writes.values())  # the overlapped input write
    assert [m.role for m in await loop.log()] == ["user"]

    other = restarted(loop)
    record = await other.advance(run.id, record.seq)
    assert record.state == "persist"
    assert EFFECTS == ["charge t1"]
    events = await collect(await restarted(loop).resume(run.id))
    assert events[-1] == RunFinished("final")
    assert EFFECTS == ["charge t1"]
    assert tool_contents(await assert_valid(loop)) == {"call_1": "charged t1"}


async def test_a_redelivered_execute_tools_step_does_not_run_the_call_again(
    make_loop: Any,
) -> None:
    loop = await make_loop(
        [tool_calls_reply([call("call_1", "charge", "t1")]), text_reply("Maybe.")], tools=TOOLS
    )
    run = loop.turn("pay")
    await loop.engine.store.create(run.record)
    seq = 0
    while (record := await loop.engine.advance(run.id, seq)).state != "execute_tools":
        seq = record.seq
    CRASH.add("t1")
    with pytest.raises(Crash):
        await restarted(loop).advance(run.id, record.seq)
    # The orchestrator delivers the same step again, to another worker.
    record = await restarted(loop).advance(run.id, record.seq)
    assert record.state == "persist"
    await collect(await restarted(loop).resume(run.id))
    assert EFFECTS == ["charge t1"]
    assert tool_contents(await assert_valid(loop)) == {"call_1": LOST_RESULT}


@pytest.mark.parametrize(
    ("script", "writes"),
    [
        ([text_reply("Hi.")], 2),  # the input, then the step
        ([tool_calls_reply([call("c", "lookup", "x")]), text_reply("Ok.")], 3),
        ([tool_calls_reply([call("c", "charge", "x")]), text_reply("Ok.")], 4),  # + the intent
    ],
    ids=["text", "idempotent", "not-idempotent"],
)
async def test_only_a_step_with_non_idempotent_calls_pays_an_extra_write(
    make_loop: Any, script: list[Any], writes: int
) -> None:
    # The store bumps an agent's version once per write that stored something.
    loop = await make_loop(script, tools=TOOLS)
    before = loop.agent.version
    assert (await collect(loop.turn("go")))[-1] == RunFinished("final")
    after = (await loop.agents.get_agent(loop.agent.id)).version
    assert after - before == writes
    await assert_valid(loop)
