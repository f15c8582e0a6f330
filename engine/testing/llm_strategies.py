"""Hypothesis strategies of LLM behaviour: streamed replies, tool calls, provider quirks, faults.

A strategy draws a *plan* (what the model says, which calls it makes, where the stream breaks)
together with the scripted `Response` that plays it, so a test knows what the loop must do.
The quirks are those of `shared/corpus/openai-streams`; every one defaults to OpenAI's shape,
so failures shrink towards a plain OpenAI stream. `conversations` draws multi-turn scripts that
are valid by construction: a turn ends with a text reply unless it ends by an error or the
step limit, so the scripted LLM is asked for exactly as many responses as the plan holds.
"""

from __future__ import annotations

import itertools
import json
import string
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
from attrs import field, frozen
from hypothesis import strategies as st

from ..llm_errors import llm_error_for
from .chunks import (
    ErrorEvent,
    Hang,
    Malformed,
    Reset,
    Response,
    Status,
    Step,
    content_chunk,
    delta_chunk,
    error_chunk,
    finish_chunk,
    role_chunk,
    tool_call_fragment,
    usage,
    usage_chunk,
)
from .strategies import texts

PRE_EXEC_KEY = "pre_exec_msg"
"""The loop's spoken field in tool arguments (the agent loop's `tool_schema.PRE_EXEC_KEY`)."""

CallKind = Literal["valid", "bad_json", "not_object", "wrong_schema", "unknown_tool"]
Where = Literal["before_first_byte", "before_output", "after_output"]
Ending = Literal["final", "max_steps", "failed"]

_ID_CHARS = string.ascii_letters + string.digits + "_"
_WORDS = st.sampled_from(["Hello there.", " It rains", " in Paris.", "One sec", "", " ", "ok\n"])


def _often(percent: int) -> st.SearchStrategy[bool]:
    """True `percent`% of the time; shrinks to False."""
    return st.integers(0, 99).map(lambda roll: roll >= 100 - percent)


def speech(*, min_size: int = 0, max_size: int = 30) -> st.SearchStrategy[str]:
    """Text a model says: unicode (whitespace at the edges included) or plain phrases."""
    phrases = st.lists(_WORDS, min_size=1, max_size=3).map("".join)
    fitted = phrases.map(lambda text: text[:max_size]).filter(lambda text: len(text) >= min_size)
    return fitted | texts(min_size=min_size, max_size=max_size)


@st.composite
def fragments(draw: st.DrawFn, text: str, max_parts: int = 6) -> list[str]:
    """`text` cut at random points into at most `max_parts` non-empty pieces ([] for '')."""
    if len(text) < 2:
        return [text] if text else []
    cuts = draw(st.lists(st.integers(1, len(text) - 1), max_size=max_parts - 1, unique=True))
    bounds = [0, *sorted(cuts), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


# ---------------------------------------------------------------------------------------------
# Plans


@frozen(kw_only=True)
class ToolModel:
    """A tool the scripted model may call."""

    name: str
    valid: st.SearchStrategy[dict[str, Any]]
    """Argument objects the tool accepts."""
    invalid: st.SearchStrategy[dict[str, Any]] = field(factory=lambda: st.just({}))
    """Argument objects its schema rejects (`{}` suits a tool with a required parameter)."""


@frozen(kw_only=True)
class Behaviour:
    """What the drawn model may do (switch a behaviour off to keep a known bug out of a test)."""

    pre_exec: bool = True
    """Calls may carry `pre_exec_msg` (the loop's `pre_exec_msg` param is on)."""
    pre_exec_in_bad_json: bool = True
    """Broken argument JSON may still hold a readable `pre_exec_msg`."""
    faults_inside_calls: bool = True
    """A fault after output may fall while tool calls stream."""
    refusals: bool = True
    """The reply may come as `refusal` deltas instead of content."""
    max_calls: int = 3
    max_fragments: int = 6
    max_text: int = 30


@frozen(kw_only=True)
class LoopPolicy:
    """The loop's limits the scripts must respect (the packaged workflow's by default)."""

    max_steps: int = 10
    attempts: int = 3
    retry_on: frozenset[str] = frozenset({"rate_limited", "server_error", "timeout"})


@frozen(kw_only=True)
class PlannedCall:
    """One tool call and how the loop must treat it."""

    id: str | None
    """None: the provider sends no id (the loop makes one up)."""
    name: str
    arguments: str
    """Raw argument text, as streamed."""
    kind: CallKind
    pre_exec: str | None
    """The `pre_exec_msg` written in `arguments` (None when there is none)."""
    tool_arguments: Mapping[str, Any] | None
    """What the tool receives when it runs (`pre_exec_msg` removed); None if it cannot run."""


@frozen(kw_only=True)
class Quirks:
    """Provider quirks of one response; all False is OpenAI's shape."""

    no_index: bool = False
    """Tool-call fragments carry no `index` (Ollama, Mistral): calls told apart by id."""
    whole_calls: bool = False
    """Each call in one chunk (Groq, xAI); without index, all calls in one delta (Mistral)."""
    ids_every_chunk: bool = False
    """Id and name repeated on every fragment (Kimi)."""
    null_ids: bool = False
    """`"id": null, "name": null` on continuation fragments (Together)."""
    no_arguments_key: bool = False
    """The call's opening fragment has no `arguments` key."""
    usage_on_finish: bool = False
    no_usage: bool = False
    empty_choices: bool = False
    """`choices: []` chunks without usage (Azure's prompt-filter chunk)."""
    other_choices: bool = False
    """Chunks of choice 1 (n > 1) that the client must not hear."""
    clean_eof: bool = False
    """No finish chunk, no usage and no `[DONE]`: the body just ends."""
    forced_stop: bool = False
    """`finish_reason: stop` although the model called tools."""
    repeated_finish: bool = False
    reasoning: bool = False
    null_role_content: bool = False
    refusal: bool = False
    """The text comes as `refusal` deltas."""


@frozen(kw_only=True)
class Fault:
    """Where and how a response breaks."""

    where: Where
    code: str
    """The `LLMError` code the loop sees."""
    step: Step


@frozen(kw_only=True)
class PlannedResponse:
    """One LLM response: what it says and the scripted chunks that say it."""

    response: Response
    text: str
    """Visible text sent in full (content, or refusal deltas)."""
    calls: tuple[PlannedCall, ...] = ()
    quirks: Quirks = field(factory=Quirks)
    fault: Fault | None = None
    text_before_fault: str = ""
    """Content streamed before an `after_output` fault."""

    @property
    def stores_reply(self) -> bool:
        """Whether the loop stores an assistant message for this response."""
        return self.fault is None or self.fault.where == "after_output"


@frozen(kw_only=True)
class TurnScript:
    """One turn: the user's text and the responses the scripted LLM plays, in order."""

    user: str
    responses: tuple[PlannedResponse, ...]
    ending: Ending
    error_code: str | None = None


# ---------------------------------------------------------------------------------------------
# Tool calls


_PRE_OUTPUT: tuple[Where, ...] = ("before_first_byte", "before_output")
_KINDS: tuple[CallKind, ...] = ("bad_json", "wrong_schema", "unknown_tool", "not_object")
_call_ids = st.text(_ID_CHARS, min_size=1, max_size=8).map(lambda tail: f"call_{tail}")
_not_objects = st.lists(st.integers(-9, 9), max_size=3) | st.integers() | st.booleans() | texts()
_unknown_names = st.text(string.ascii_lowercase + "_", min_size=1, max_size=12)


def _call_kind(roll: int) -> CallKind:
    return "valid" if roll < 60 else _KINDS[(roll - 60) // 10]


@st.composite
def _json_text(draw: st.DrawFn, value: object) -> str:
    """`value` as JSON the way some model writes it (escaped or raw unicode, spaced or not)."""
    compact = draw(st.booleans())
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(value, ensure_ascii=draw(st.booleans()), separators=separators)


@st.composite
def tool_calls(
    draw: st.DrawFn,
    tools: Sequence[ToolModel],
    *,
    call_id: str | None = None,
    behaviour: Behaviour = Behaviour(),
) -> PlannedCall:
    """One call: valid, invalid JSON, not an object, the wrong schema, or an unknown tool."""
    kind = _call_kind(draw(st.integers(0, 99)))
    tool = draw(st.sampled_from(list(tools)))
    pre = draw(st.none() | speech()) if behaviour.pre_exec else None
    names = {t.name for t in tools}
    name = tool.name
    if kind == "not_object":
        text = draw(_json_text(draw(_not_objects)))
        return PlannedCall(
            id=call_id, name=name, arguments=text, kind=kind, pre_exec=None, tool_arguments=None
        )
    if kind == "unknown_tool":
        name = draw(_unknown_names.filter(lambda n: n not in names))
        args = draw(st.dictionaries(_unknown_names, st.integers(0, 9), max_size=2))
    else:
        args = draw(tool.invalid if kind == "wrong_schema" else tool.valid)
    if kind == "bad_json" and not behaviour.pre_exec_in_bad_json:
        pre = None
    whole = args if pre is None else {PRE_EXEC_KEY: pre, **args}
    text = draw(_json_text(whole))
    if kind == "bad_json":
        # A strict prefix of an object's JSON never parses: the closing brace is missing.
        text = text[: draw(st.integers(1, len(text) - 1))]
    return PlannedCall(
        id=call_id,
        name=name,
        arguments=text,
        kind=kind,
        pre_exec=pre,
        tool_arguments=args if kind == "valid" else None,
    )


# ---------------------------------------------------------------------------------------------
# Chunks of one response

_Tagged = list[tuple[Step, str]]
"""Steps tagged `out` (visible text), `call` (a tool-call chunk) or '' (neither)."""


@st.composite
def quirks(draw: st.DrawFn, *, refusal: bool = False) -> Quirks:
    """Provider quirks of one response (each about one time in four)."""
    names = [f.name for f in Quirks.__attrs_attrs__ if f.name != "refusal"]
    drawn = {name: draw(_often(25)) for name in names}
    return Quirks(refusal=refusal and draw(_often(15)), **drawn)


def _empty_choices() -> Step:
    # Azure's prompt-filter chunk: no id, no choices, no usage.
    return {"id": "", "object": "", "created": 0, "model": "", "choices": []}


def _continuation(index: int | None, call: PlannedCall, q: Quirks, piece: str) -> dict[str, Any]:
    if q.null_ids:
        entry: dict[str, Any] = {} if index is None else {"index": index}
        return {**entry, "id": None, "function": {"name": None, "arguments": piece}}
    again = q.ids_every_chunk
    return tool_call_fragment(
        index, call.id if again else None, call.name if again else None, piece
    )


@st.composite
def _call_chunks(
    draw: st.DrawFn,
    calls: Sequence[PlannedCall],
    q: Quirks,
    meta: Mapping[str, Any],
    max_parts: int,
) -> _Tagged:
    def chunk(*entries: dict[str, Any]) -> tuple[Step, str]:
        return delta_chunk({"tool_calls": list(entries)}, meta=meta), "call"

    if q.whole_calls and q.no_index and len(calls) > 1:  # Mistral: every call in one delta
        return [chunk(*(tool_call_fragment(None, c.id, c.name, c.arguments) for c in calls))]
    out: _Tagged = []
    for position, call in enumerate(calls):
        index = None if q.no_index else position
        if q.whole_calls:
            out.append(chunk(tool_call_fragment(index, call.id, call.name, call.arguments)))
            continue
        opening = None if q.no_arguments_key else ""
        out.append(chunk(tool_call_fragment(index, call.id, call.name, opening)))
        for piece in draw(fragments(call.arguments, max_parts)):
            out.append(chunk(_continuation(index, call, q, piece)))
    return out


@st.composite
def _stream(
    draw: st.DrawFn, text: str, calls: Sequence[PlannedCall], q: Quirks, behaviour: Behaviour
) -> _Tagged:
    meta = {"id": f"chatcmpl-{draw(st.integers(0, 3))}"}
    if q.null_role_content:
        steps: _Tagged = [(delta_chunk({"role": "assistant", "content": None}, meta=meta), "")]
    else:
        steps = [(role_chunk(meta=meta), "")]
    if q.reasoning:
        thought = draw(fragments(draw(speech(min_size=1)), 3))
        steps += [(delta_chunk({"reasoning_content": p}, meta=meta), "") for p in thought]
    for piece in draw(fragments(text, behaviour.max_fragments)):
        if q.refusal:
            steps.append((delta_chunk({"refusal": piece}, meta=meta), ""))
        else:
            steps.append((content_chunk(piece, meta=meta), "out"))
    steps += draw(_call_chunks(calls, q, meta, behaviour.max_fragments))
    if not q.clean_eof:
        reason = "tool_calls" if calls and not q.forced_stop else "stop"
        tokens = usage(draw(st.integers(1, 99)), draw(st.integers(0, 99)))
        on_finish = tokens if q.usage_on_finish and not q.no_usage else None
        steps.append((finish_chunk(reason, usage=on_finish, meta=meta), ""))
        if q.repeated_finish:
            steps.append((finish_chunk(reason, meta=meta), ""))
        if not q.no_usage and not q.usage_on_finish:
            steps.append((usage_chunk(tokens["prompt_tokens"], tokens["completion_tokens"]), ""))
    extra = [_empty_choices()] if q.empty_choices else []
    if q.other_choices:
        other = {"index": 1, "delta": {"content": "(choice 1)"}, "finish_reason": None}
        extra.append({**content_chunk("", meta=meta), "choices": [other]})
    for step in extra:
        steps.insert(draw(st.integers(1, len(steps))), (step, ""))
    return steps


def _played(tagged: _Tagged, text: str, calls: Sequence[PlannedCall], q: Quirks) -> PlannedResponse:
    steps = tuple(step for step, _ in tagged)
    return PlannedResponse(
        response=Response(steps=steps, done=not q.clean_eof),
        text=text,
        calls=tuple(calls),
        quirks=q,
    )


@st.composite
def _calls(
    draw: st.DrawFn, tools: Sequence[ToolModel], q: Quirks, behaviour: Behaviour
) -> list[PlannedCall]:
    count = draw(st.integers(1, behaviour.max_calls))
    ids = draw(st.lists(_call_ids, min_size=count, max_size=count, unique=True))
    made: list[PlannedCall] = []
    for call_id in ids:
        # Without `index` the loop tells calls apart by id, so such providers always send one.
        keep = q.no_index or not draw(_often(15))
        made.append(draw(tool_calls(tools, call_id=call_id if keep else None, behaviour=behaviour)))
    return made


# ---------------------------------------------------------------------------------------------
# Responses


@st.composite
def text_replies(draw: st.DrawFn, *, behaviour: Behaviour = Behaviour()) -> PlannedResponse:
    """A reply with no tool call: unicode text (maybe empty) in any number of deltas."""
    q = draw(quirks(refusal=behaviour.refusals))
    text = draw(speech(max_size=behaviour.max_text))
    return _played(draw(_stream(text, (), q, behaviour)), text, (), q)


@st.composite
def tool_call_replies(
    draw: st.DrawFn, tools: Sequence[ToolModel], *, behaviour: Behaviour = Behaviour()
) -> PlannedResponse:
    """One to `max_calls` calls (parallel when several), maybe after some text."""
    q = draw(quirks())
    text = draw(st.just("") | speech(max_size=behaviour.max_text))
    calls = draw(_calls(tools, q, behaviour))
    return _played(draw(_stream(text, calls, q, behaviour)), text, calls, q)


@st.composite
def first_byte_faults(draw: st.DrawFn) -> Fault:
    """An error status instead of a stream, or no first byte at all (a timeout)."""
    if draw(_often(15)):
        return Fault(where="before_first_byte", code="timeout", step=Hang())
    status = draw(st.sampled_from([429, 500, 503, 502, 408, 400, 401]))
    headers = {"Retry-After": "0"} if draw(st.booleans()) else {}
    error = {"message": draw(st.sampled_from(["busy", "overloaded", "no"]))}
    code = llm_error_for(status, error, headers).code
    return Fault(
        where="before_first_byte",
        code=code,
        step=Status(status=status, error=error, headers=headers),
    )


@st.composite
def stream_faults(draw: st.DrawFn, where: Where) -> Fault:
    """A break inside a 200 stream: reset, malformed chunk, `event: error`, error chunk."""
    kind = draw(st.integers(0, 3))
    if kind < 2:
        return Fault(where=where, code="stream_error", step=Reset() if kind == 0 else Malformed())
    error: dict[str, Any] = {"message": draw(st.sampled_from(["overloaded", "boom"]))}
    if kind == 2:
        error["type"] = draw(st.sampled_from([None, "server_error"]))
        return Fault(where=where, code=llm_error_for(None, error).code, step=ErrorEvent(error))
    chunk = error_chunk(error["message"], code=draw(st.sampled_from([None, 429, 503, "x"])))
    return Fault(where=where, code=llm_error_for(None, chunk["error"]).code, step=chunk)


@st.composite
def failing_responses(
    draw: st.DrawFn,
    tools: Sequence[ToolModel],
    where: Where,
    *,
    behaviour: Behaviour = Behaviour(),
) -> PlannedResponse:
    """A response that breaks `before_first_byte`, `before_output` (after some chunks that
    show nothing) or `after_output` (after at least one visible content delta)."""
    if where == "before_first_byte":
        fault = draw(first_byte_faults())
        return PlannedResponse(
            response=Response(steps=(fault.step,), done=False), text="", fault=fault
        )
    q = attrs.evolve(draw(quirks()), clean_eof=False)  # the stream ends at the fault
    after = where == "after_output"
    text = draw(
        speech(min_size=1, max_size=behaviour.max_text) if after else st.just("") | speech()
    )
    calls = draw(_calls(tools, q, behaviour)) if draw(st.booleans()) else []
    tagged = draw(_stream(text, calls, q, behaviour))
    tags = [tag for _, tag in tagged]
    first_shown = next((i for i, tag in enumerate(tags) if tag in ("out", "call")), len(tags))
    if after:
        first_call = tags.index("call") if "call" in tags else len(tags)
        last = len(tags) if behaviour.faults_inside_calls else first_call
        cut = draw(st.integers(tags.index("out") + 1, max(last, tags.index("out") + 1)))
    else:
        cut = draw(st.integers(0, first_shown))
    fault = draw(stream_faults(where))
    shown = "".join(
        step["choices"][0]["delta"]["content"]
        for step, tag in tagged[:cut]
        if tag == "out" and isinstance(step, dict)
    )
    steps = (*(step for step, _ in tagged[:cut]), fault.step)
    return PlannedResponse(
        response=Response(steps=steps, done=False),
        text=text,
        calls=tuple(calls),
        quirks=q,
        fault=fault,
        text_before_fault=shown,
    )


def llm_responses(
    tools: Sequence[ToolModel], *, behaviour: Behaviour = Behaviour()
) -> st.SearchStrategy[PlannedResponse]:
    """Any one response: a reply, tool calls, or a fault at any point."""
    wheres: list[Where] = ["before_first_byte", "before_output", "after_output"]
    return st.one_of(
        text_replies(behaviour=behaviour),
        tool_call_replies(tools, behaviour=behaviour),
        st.sampled_from(wheres).flatmap(
            lambda where: failing_responses(tools, where, behaviour=behaviour)
        ),
    )


# ---------------------------------------------------------------------------------------------
# Conversations


@st.composite
def turn_scripts(
    draw: st.DrawFn,
    tools: Sequence[ToolModel],
    *,
    policy: LoopPolicy = LoopPolicy(),
    behaviour: Behaviour = Behaviour(),
    max_tool_steps: int = 3,
) -> TurnScript:
    """One turn the loop plays to its end: retried faults, tool steps, then a text reply,
    unless a fault ends it (not retried, retries used up, or after output) or the step
    limit does."""
    user = draw(speech(min_size=1))
    planned_steps = draw(st.integers(0, max_tool_steps))
    played: list[PlannedResponse] = []

    def ended(ending: Ending, code: str | None = None) -> TurnScript:
        return TurnScript(user=user, responses=tuple(played), ending=ending, error_code=code)

    step = 0
    while True:
        for attempt in range(1, policy.attempts + 1):
            if not draw(_often(15)):
                break
            where = draw(st.sampled_from(_PRE_OUTPUT))
            failed = draw(failing_responses(tools, where, behaviour=behaviour))
            played.append(failed)
            assert failed.fault is not None
            if failed.fault.code not in policy.retry_on or attempt == policy.attempts:
                return ended("failed", failed.fault.code)
        if draw(_often(10)):
            failed = draw(failing_responses(tools, "after_output", behaviour=behaviour))
            played.append(failed)
            assert failed.fault is not None
            return ended("failed", failed.fault.code)
        if step == planned_steps:
            played.append(draw(text_replies(behaviour=behaviour)))
            return ended("final")
        played.append(draw(tool_call_replies(tools, behaviour=behaviour)))
        step += 1
        if step >= policy.max_steps:
            return ended("max_steps")


def conversations(
    tools: Sequence[ToolModel],
    *,
    policy: LoopPolicy = LoopPolicy(),
    behaviour: Behaviour = Behaviour(),
    max_turns: int = 4,
    max_tool_steps: int = 3,
) -> st.SearchStrategy[tuple[TurnScript, ...]]:
    """One to `max_turns` turns on one agent."""
    turn = turn_scripts(tools, policy=policy, behaviour=behaviour, max_tool_steps=max_tool_steps)
    return st.lists(turn, min_size=1, max_size=max_turns).map(tuple)


def script_of(turns: Sequence[TurnScript]) -> list[Response]:
    """Every response of `turns`, in the order the scripted LLM must play them."""
    return [planned.response for turn in turns for planned in turn.responses]
