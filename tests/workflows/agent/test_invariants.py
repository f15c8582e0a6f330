"""The agent loop's invariants I1-I6, end to end, over Hypothesis conversations.

The real loop (the packaged workflow, its retry backoff set to zero so retries cost nothing),
the scripted LLM playing `engine.testing.llm_strategies.conversations`, a real Python toolbox
whose tools record their calls, and a real SQLite store (a file per example). After every
turn: I1-I6 (workflows.agent.invariants), what the model saw equals what is stored, and the
turn did what its script says (requests made, tools run, messages stored, how it ended).

The tests at the end pin loop bugs the property test found; each is `xfail(strict=True)`, so
fixing the bug turns it into a failure that asks for the marker (and the matching `Behaviour`
switch in `BEHAVIOUR`) to go.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopwright.adapters.storage.sql import SqlStore, open_store
from loopwright.adapters.tools.python import PythonToolbox
from loopwright.engine import Compiled, Engine, Run
from loopwright.engine.loader import load_workflow
from loopwright.engine.testing.chunks import (
    CallSpec,
    Reset,
    Response,
    Status,
    content_chunk,
    delta_chunk,
    finish_chunk,
    role_chunk,
    text_reply,
    tool_call_chunk,
    tool_calls_reply,
)
from loopwright.engine.testing.llm_strategies import (
    Behaviour,
    LoopPolicy,
    ToolModel,
    TurnScript,
    conversations,
    script_of,
    speech,
)
from loopwright.engine.testing.memory import ManualClock, SequentialIds
from loopwright.engine.testing.scripted_llm import ScriptedLLM
from loopwright.engine.validate import validate
from loopwright.schemas import (
    Agent,
    Block,
    Event,
    Message,
    Retrying,
    RunFailed,
    RunFinished,
    StateEntered,
    TextDelta,
    ToolCall,
    ToolOutput,
    ToolResult,
    converter,
)
from loopwright.workflows import registry, workflow_path
from loopwright.workflows.agent.invariants import (
    Violation,
    check_log,
    check_request_matches,
    check_run_end,
    check_spoken,
    check_stored_once,
    check_system_first,
    check_terminal,
    check_tool_pairing,
)
from loopwright.workflows.agent.prompt import render_blocks
from loopwright.workflows.agent.request import to_openai
from loopwright.workflows.agent.services import AgentServices
from loopwright.workflows.agent.tools import envelope
from loopwright.workflows.agent.turn import TurnData, TurnInput

# ---------------------------------------------------------------------------------------------
# The toolbox: tools that record their calls (sync ones run on worker threads, hence the lock)

_lock = threading.Lock()
CALLS: list[tuple[str, dict[str, Any]]] = []


def _record(name: str, **arguments: Any) -> None:
    with _lock:
        CALLS.append((name, arguments))


def get_weather(city: str) -> dict[str, str]:
    """Today's weather.

    Args:
        city: The city.
    """
    _record("get_weather", city=city)
    return {"city": city, "forecast": "rain"}


async def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: One.
        b: The other.
    """
    _record("add", a=a, b=b)
    return a + b


def explode(reason: str) -> str:
    """Always fails.

    Args:
        reason: Why.
    """
    _record("explode", reason=reason)
    raise RuntimeError(reason)


ACTIVE: list[Harness] = []
"""The harness of the running example (the toolbox is built once, its memory tool needs it)."""


async def remember(fact: str) -> str:
    """Replace what the agent knows about the human.

    Args:
        fact: The new value of the `human` block.
    """
    _record("remember", fact=fact)
    await ACTIVE[-1].edit_block(Block(label="human", value=fact))
    return "noted"


_small = st.integers(-1000, 1000)
TOOLS = (
    ToolModel(
        name="get_weather",
        valid=st.fixed_dictionaries({"city": speech(min_size=1)}),
        invalid=st.sampled_from([{}, {"town": "Rome"}, {"city": 3}]),
    ),
    ToolModel(
        name="add",
        valid=st.fixed_dictionaries({"a": _small, "b": _small}),
        invalid=st.sampled_from([{"a": 1}, {"a": "one", "b": 2}]),
    ),
    ToolModel(name="explode", valid=st.fixed_dictionaries({"reason": speech()})),
)
MEMORY_TOOL = ToolModel(name="remember", valid=st.fixed_dictionaries({"fact": speech()}))
FAILING_TOOLS = {"explode"}
TOOLBOX = PythonToolbox.from_callables([get_weather, add, explode, remember])  # stateless

# Behaviours that hit the loop bugs pinned at the end of this module; each goes back on
# (the default, or True) once its bug is fixed.
BEHAVIOUR = Behaviour()
MEMORY_EDITS_IN_TURNS = True


def _compiled() -> Compiled:
    """The packaged workflow with no retry backoff (Hypothesis runs hundreds of retries)."""
    workflow = load_workflow(workflow_path())
    stream = workflow.states["stream"]
    assert stream.retry is not None
    fast = attrs.evolve(stream, retry=attrs.evolve(stream.retry, backoff_ms=0, max_backoff_ms=0))
    states = {**workflow.states, "stream": fast}
    return validate(attrs.evolve(workflow, states=states), registry(), source="<no backoff>")


COMPILED = _compiled()
_retry = COMPILED.workflow.states["stream"].retry
assert _retry is not None
RETRY = _retry


# ---------------------------------------------------------------------------------------------
# One agent on one SQLite file


@attrs.define
class Harness:
    """An agent loop on a SQLite store, with the blocks as they are now and what the LLM saw."""

    store: SqlStore
    engine: Engine
    services: AgentServices
    llm: ScriptedLLM
    agent: Agent
    clock: ManualClock
    blocks: dict[str, Block]
    seen_blocks: list[tuple[Block, ...]] = attrs.Factory(list)
    """The blocks at the moment of each LLM request."""

    async def edit_block(self, block: Block) -> None:
        """A memory edit (a memory tool, another process)."""
        # Before the write: parallel edits reach the store's one writer in this order.
        self.blocks[block.label] = block
        await self.store.put_block(self.agent.id, block)

    def start(self, text: str, **params: Any) -> tuple[Run, Message]:
        """Start one turn with `text` as the user's message."""
        ids = self.engine.ids
        run_id = ids.new_id("run")
        user = Message(
            id=ids.new_id("msg"),
            role="user",
            content=text,
            run_id=run_id,
            created_at=self.clock.now(),
        )
        inputs = converter.unstructure(TurnInput(agent=self.agent.id, messages=(user,)))
        run = self.engine.start(
            COMPILED,
            inputs,
            params=params,
            run_id=run_id,
            data=TurnData(agent_id=self.agent.id),
            key=self.agent.id,
        )
        return run, user

    async def turn(self, text: str, *, settle: bool = True, **params: Any) -> Played:
        """Run one turn to its end."""
        (run, user), first = self.start(text, **params), len(self.llm.requests)
        with _lock:
            CALLS.clear()
        events = [event async for event in run]
        await self.engine.drain()
        if settle:
            # A turn that fails before `persist` leaves its input write running (pinned by
            # test_a_turn_failing_before_persist_leaves_its_input_write_behind): let it land
            # so the checks, and the next turn, see one state of the store.
            await asyncio.gather(*self.services.input_writes.values())
            self.services.input_writes.clear()
        with _lock:
            calls = list(CALLS)
        return Played(
            run_id=run.id,
            user=user,
            events=events,
            first_request=first,
            requests=len(self.llm.requests) - first,
            tool_calls=calls,
        )


@attrs.frozen(kw_only=True)
class Played:
    """What one turn did."""

    run_id: str
    user: Message
    events: list[Event]
    first_request: int
    """Index of the turn's first request in `ScriptedLLM.requests`."""
    requests: int
    tool_calls: list[tuple[str, dict[str, Any]]]
    """Calls the tools received, in completion order."""


async def open_harness(path: Path, script: Sequence[Response], blocks: Sequence[Block]) -> Harness:
    clock = ManualClock()
    store = await open_store(f"sqlite:///{path}", clock=clock)
    responses = iter(script)

    def respond(_body: Mapping[str, Any]) -> Response:
        harness.seen_blocks.append(tuple(harness.blocks.values()))  # bound before any request
        return next(responses)

    llm = ScriptedLLM(respond)
    services = AgentServices(store=store, llm=llm, toolbox_for=lambda _agent: TOOLBOX)
    engine = Engine(store=store, services={"agent": services}, clock=clock, ids=SequentialIds())
    engine.add_workflow(COMPILED)
    agent = await store.create_agent(
        Agent(id="agent-1", name="ada", model="gpt-test", system="Be brief."), blocks
    )
    harness = Harness(
        store=store,
        engine=engine,
        services=services,
        llm=llm,
        agent=agent,
        clock=clock,
        blocks={b.label: b for b in blocks},
    )
    ACTIVE.append(harness)
    return harness


async def close_harness(harness: Harness) -> None:
    ACTIVE.remove(harness)
    await asyncio.gather(*harness.services.input_writes.values())
    await harness.engine.aclose()
    await harness.store.aclose()


# ---------------------------------------------------------------------------------------------
# What a turn must leave behind


def request_steps(events: Sequence[Event]) -> list[int]:
    """The step of each LLM request of a turn, from its events (a retry repeats its step)."""
    step, steps = -1, []
    for event in events:
        if isinstance(event, StateEntered) and event.state == "request":
            step += 1
        elif isinstance(event, StateEntered | Retrying) and event.state == "stream":
            steps.append(step)
    return steps


def seen_equals_stored(
    harness: Harness, turn: Played, context: Sequence[Message]
) -> list[Violation]:
    """Each request of the turn: I2, I1, and its messages after the system message are the
    stored in-context messages that existed when it was built, the turn's input included."""
    bodies = harness.llm.requests[turn.first_request :]
    steps = request_steps(turn.events)
    if len(steps) != len(bodies):
        return [Violation("seen=stored", f"{len(bodies)} requests, the events show {steps}")]
    found: list[Violation] = []
    blocks = harness.seen_blocks[turn.first_request :]
    for body, step, shown in zip(bodies, steps, blocks, strict=True):
        found += check_system_first(body, shown)
        found += check_tool_pairing(body["messages"], where="request")
        then = [m for m in context if m.run_id != turn.run_id or m.role == "user" or m.step < step]
        found += check_request_matches(body, then)
    return found


class _Heard:
    """Equal to a stored text that holds `content` as a subsequence (pre-exec speech may sit
    between its pieces)."""

    def __init__(self, content: str) -> None:
        self.content = content

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str):
            return False
        rest = iter(other)
        return all(ch in rest for ch in self.content)

    def __hash__(self) -> int:
        return hash(self.content)

    def __repr__(self) -> str:
        return f"_Heard({self.content!r})"


def expected_rows(script: TurnScript) -> list[tuple[Any, ...]]:
    """The turn's messages as the script says they are stored (ANY: an id the loop makes up
    when the provider sent none; tool contents are checked against the events)."""
    rows: list[tuple[Any, ...]] = [("user", script.user, (), None, False)]
    for planned in script.responses:
        if not planned.stores_reply:
            continue
        if planned.fault is not None:
            # What was heard: the content so far, with any pre-exec speech woven in (I6
            # checks it equals the streamed text exactly).
            rows.append(("assistant", _Heard(planned.text_before_fault), (), None, True))
            continue
        calls = tuple((c.id or ANY, c.name, c.arguments) for c in planned.calls)
        rows.append(
            ("assistant", planned.text or None if calls else planned.text, calls, None, False)
        )
        rows += [("tool", None, (), c.id or ANY, False) for c in planned.calls]
    return rows


def stored_rows(stored: Sequence[Message]) -> list[tuple[Any, ...]]:
    return [
        (
            m.role,
            None if m.role == "tool" else m.content,
            tuple((c.id, c.name, c.arguments) for c in m.tool_calls),
            m.tool_call_id,
            m.incomplete,
        )
        for m in stored
    ]


def script_followed(script: TurnScript, turn: Played, stored: Sequence[Message]) -> list[str]:
    """The turn did what its script says: requests, ending, tools run, messages stored."""
    found = []
    if turn.requests != len(script.responses):
        found.append(f"{turn.requests} requests, the script has {len(script.responses)}")
    last = turn.events[-1]
    if script.ending == "failed":
        if not (isinstance(last, RunFailed) and last.code == script.error_code):
            found.append(f"ended with {last!r}, the script fails with {script.error_code}")
    elif last != RunFinished(script.ending):
        found.append(f"ended with {last!r}, the script ends {script.ending}")
    made = [c for p in script.responses if p.fault is None for c in p.calls]
    runs = sorted(
        (c.name, json.dumps(c.tool_arguments, sort_keys=True)) for c in made if c.kind == "valid"
    )
    ran = sorted((name, json.dumps(args, sort_keys=True)) for name, args in turn.tool_calls)
    if ran != runs:
        found.append(f"tools ran {ran}, the script calls {runs}")
    results = [e for e in turn.events if isinstance(e, ToolResult)]
    ok = ["ok" if c.kind == "valid" and c.name not in FAILING_TOOLS else "error" for c in made]
    if [r.status for r in results] != ok:
        found.append(f"tool statuses {[r.status for r in results]}, the script gives {ok}")
    sent = [
        envelope(ToolOutput(status="ok" if r.status == "ok" else "error", content=r.content))
        for r in results
    ]
    if [m.content for m in stored if m.role == "tool"] != sent:
        found.append("the stored tool results are not the ToolResult events")
    if stored_rows(stored) != expected_rows(script):
        found.append(f"stored {stored_rows(stored)}, the script gives {expected_rows(script)}")
    return found


async def check_turn(
    harness: Harness, script: TurnScript, turn: Played, before: Sequence[Message], speak: bool
) -> list[Violation | str]:
    """Every invariant after one turn, and the turn against its script."""
    store, agent_id = harness.store, harness.agent.id
    record = await store.load(turn.run_id)
    assert record is not None
    log = await store.list_messages(agent_id)
    context = (await store.load_context(agent_id)).messages
    stored = log[len(before) :]
    found: list[Violation | str] = []
    found += check_terminal(turn.events)
    found += check_run_end(record, turn.events, COMPILED.workflow)
    found += check_log(log, context)
    found += check_stored_once([*before, turn.user], log)
    if any(m.run_id != turn.run_id for m in stored):
        found.append(Violation("I3", "the log is not the previous log plus this turn's messages"))
    found += check_spoken(turn.events, stored, pre_exec=speak)
    found += seen_equals_stored(harness, turn, context)
    found += script_followed(script, turn, stored)
    return found


# ---------------------------------------------------------------------------------------------
# The property


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    """An agent (blocks, step cap, pre-exec speech on or off), its turns and memory edits."""
    max_steps = draw(st.integers(1, 4))
    speak = draw(st.booleans())
    policy = LoopPolicy(max_steps=max_steps, attempts=RETRY.attempts, retry_on=frozenset(RETRY.on))
    behaviour = attrs.evolve(BEHAVIOUR, pre_exec=speak)
    tools = (*TOOLS, MEMORY_TOOL) if MEMORY_EDITS_IN_TURNS else TOOLS
    turns = draw(conversations(tools, policy=policy, behaviour=behaviour, max_turns=3))
    edits = draw(st.lists(st.none() | speech(), min_size=len(turns), max_size=len(turns)))
    human = Block(label="human", value=draw(speech()))
    return {
        "max_steps": max_steps,
        "speak": speak,
        "turns": turns,
        "edits": edits,
        "blocks": (human, Block(label="persona", value="Kind.")),
    }


async def play(case: Mapping[str, Any], path: Path) -> None:
    """Every turn of the case on one agent, checking everything after each."""
    turns: tuple[TurnScript, ...] = case["turns"]
    harness = await open_harness(path, script_of(turns), case["blocks"])
    params = {"max_steps": case["max_steps"], "pre_exec_msg": case["speak"]}
    before: Sequence[Message] = []
    try:
        for script, edit in zip(turns, case["edits"], strict=True):
            if edit is not None:  # an outside memory edit between turns
                await harness.edit_block(Block(label="human", value=edit))
            turn = await harness.turn(script.user, **params)
            found = await check_turn(harness, script, turn, before, case["speak"])
            assert not found, "\n".join(map(str, found))
            before = await harness.store.list_messages(harness.agent.id)
    finally:
        await close_harness(harness)


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with the schema in place: copying it costs a tenth of creating one."""
    path = tmp_path_factory.mktemp("invariants") / "empty.db"

    async def create() -> None:
        await (await open_store(f"sqlite:///{path}")).aclose()

    asyncio.run(create())
    return path


@settings(max_examples=max(10, settings().max_examples // 2))  # each: up to 3 turns
@given(case=cases())
def test_invariants_hold_over_random_conversations(case: dict[str, Any], empty_db: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "loop.db"
        shutil.copyfile(empty_db, path)
        asyncio.run(play(case, path))


# ---------------------------------------------------------------------------------------------
# The checkers catch what they promise to (on stored messages and on wire dicts alike)


def _user(i: str) -> Message:
    return Message(id=i, role="user", content="x")


def _asks(i: str, *calls: str) -> Message:
    return Message(
        id=i, role="assistant", tool_calls=tuple(ToolCall(id=c, name="t") for c in calls)
    )


def _answer(i: str, call: str) -> Message:
    return Message(id=i, role="tool", content="r", tool_call_id=call)


@pytest.mark.parametrize(
    ("messages", "broken"),
    [
        ([_user("1"), _asks("2", "a", "b"), _answer("3", "b"), _answer("4", "a"), _asks("5")], 0),
        ([_user("1"), _asks("2", "a"), _user("3")], 1),  # never answered
        ([_user("1"), _asks("2", "a")], 1),  # still open at the end
        ([_user("1"), _answer("2", "a")], 1),  # no call to answer
        ([_asks("1", "a"), _answer("2", "a"), _answer("3", "a")], 1),  # answered twice
        ([_asks("1", "a", "a"), _answer("2", "a")], 1),  # one id for two calls
        ([_asks("1", "a"), _user("2"), _answer("3", "a")], 2),  # answered too late
    ],
)
def test_tool_pairing_violations_are_found(messages: list[Message], broken: int) -> None:
    assert len(check_tool_pairing(messages)) == broken
    assert len(check_tool_pairing([to_openai(m) for m in messages])) == broken


def test_log_system_message_and_terminal_violations_are_found() -> None:
    log = [_user("1"), _asks("2"), _user("3")]
    assert check_log(log, [log[0], log[2]]) == []
    assert [v.invariant for v in check_log(log, [log[2], log[0]])] == ["I3"]
    assert [v.invariant for v in check_log([*log, log[0]], log)] == ["I3"]
    block = Block(label="human", value="Ada")
    body = {"messages": [{"role": "system", "content": render_blocks([block])}]}
    assert check_system_first(body, [block]) == []
    assert len(check_system_first(body, [attrs.evolve(block, value="Bea")])) == 1
    twice = {"messages": [*body["messages"], *body["messages"]]}
    assert len(check_system_first(twice, [block])) == 1
    done, failed = RunFinished("final"), RunFailed("x", "y")
    assert check_terminal([TextDelta("a"), done]) == []
    assert len(check_terminal([done, TextDelta("a")])) == 1
    assert len(check_terminal([failed, done])) == 1
    assert (
        len(check_spoken([TextDelta("Hi")], [Message(id="1", role="assistant", content="Ho")])) == 1
    )


# ---------------------------------------------------------------------------------------------
# Loop bugs found by the property above, pinned by one example each

BLOCKS = (Block(label="human", value="Ada"),)


async def violations_of_turns(
    path: Path, script: Sequence[Response], *texts: str, **params: Any
) -> list[Violation]:
    """Play `texts` as turns on `script` and check I1-I6 (no script model: fixed examples)."""
    harness = await open_harness(path, script, BLOCKS)
    found: list[Violation] = []
    try:
        for text in texts:
            turn = await harness.turn(text, **params)
            log = await harness.store.list_messages(harness.agent.id)
            context = (await harness.store.load_context(harness.agent.id)).messages
            found += check_terminal(turn.events)
            found += check_log(log, context)
            found += check_spoken(turn.events, [m for m in log if m.run_id == turn.run_id])
            found += seen_equals_stored(harness, turn, context)
    finally:
        await close_harness(harness)
    return found


def weather(arguments: str, call_id: str = "call_1") -> CallSpec:
    return CallSpec(id=call_id, name="get_weather", arguments=arguments)


async def test_a_memory_edit_during_a_turn_reaches_the_next_request(tmp_path: Path) -> None:
    script = [
        tool_calls_reply([CallSpec(id="c1", name="remember", arguments='{"fact": "Bea"}')]),
        text_reply("Noted."),
        text_reply("Hi Bea."),
    ]
    found = await violations_of_turns(tmp_path / "db", script, "call me Bea", "hello")
    assert not found, "\n".join(map(str, found))


async def test_pre_exec_speech_of_broken_arguments_is_stored(tmp_path: Path) -> None:
    script = [
        tool_calls_reply([weather('{"pre_exec_msg": "One sec.", "city": "Par')]),
        text_reply("Sorry."),
    ]
    found = await violations_of_turns(tmp_path / "db", script, "weather?")
    assert not found, "\n".join(map(str, found))


@pytest.mark.parametrize("content", ["Let me see.", ""])
async def test_a_fault_after_pre_exec_speech_keeps_what_was_heard(
    tmp_path: Path, content: str
) -> None:
    steps: list[Any] = [role_chunk()]
    steps += [content_chunk(content)] if content else []
    steps += [
        tool_call_chunk(0, id="call_1", name="get_weather", arguments=""),
        tool_call_chunk(0, arguments='{"pre_exec_msg": "One sec.", "ci'),
        Reset(),
    ]
    found = await violations_of_turns(tmp_path / "db", [Response(steps=tuple(steps))], "hi")
    assert not found, "\n".join(map(str, found))


async def test_a_refusal_is_heard_as_it_is_stored(tmp_path: Path) -> None:
    refusal = Response(
        steps=(
            delta_chunk({"role": "assistant", "content": None, "refusal": ""}),
            delta_chunk({"refusal": "I can't"}),
            delta_chunk({"refusal": " help with that."}),
            finish_chunk("stop"),
        )
    )
    found = await violations_of_turns(tmp_path / "db", [refusal], "do something bad")
    assert not found, "\n".join(map(str, found))


async def test_a_turn_failing_before_persist_leaves_its_input_write_behind(
    tmp_path: Path,
) -> None:
    harness = await open_harness(tmp_path / "db", [Response(steps=(Status(status=401),))], BLOCKS)
    try:
        turn = await harness.turn("hi", settle=False)
        assert isinstance(turn.events[-1], RunFailed)
        # The turn has ended: nothing of it may still be running or held.
        assert harness.services.input_writes == {}
    finally:
        await close_harness(harness)


async def test_a_barge_in_keeps_what_was_heard(tmp_path: Path) -> None:
    harness = await open_harness(tmp_path / "db", [text_reply("Hello there, Ada.")], BLOCKS)
    try:
        run, _ = harness.start("hi")
        heard: list[Event] = []
        async with run:
            async for event in run:
                if isinstance(event, TextDelta):
                    heard.append(event)
                    break
        assert run.record.status == "cancelled"
        await asyncio.gather(*harness.services.input_writes.values())
        log = await harness.store.list_messages(harness.agent.id)
        turn = [m for m in log if m.run_id == run.id]
        found = check_spoken(heard, turn)
        assert not found, "\n".join(map(str, found))
        assert [m.incomplete for m in turn if m.role == "assistant"] == [True]
    finally:
        await close_harness(harness)
