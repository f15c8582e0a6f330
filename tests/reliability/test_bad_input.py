"""Issue 5, point 5: bad input gets a typed error and loses nothing that was accepted.

Already proven elsewhere, so not repeated here: fuzzed workflow files never make
`loopwright validate` print a traceback (tests/adapters/test_cli_validate.py); an unknown agent
is a clear CLI error (tests/adapters/test_cli_agent.py) and an HTTP 404 `model_not_found`, an
oversized turn an HTTP 400 `input_too_large` that stores nothing
(tests/adapters/http/test_server_*.py); the toolbox's own answers to bad arguments and
unserialisable results (tests/adapters/tools/test_python.py); every malformed stream shape at
the adapter (tests/adapters/llm/test_faults.py). Here each bad input goes through the whole
stack, real HTTP and the real `OpenAILLM` over loopback, and the test checks what was kept.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopwright.adapters.http.chat import ServerOptions
from loopwright.adapters.llm.fake_server import FakeOpenAIServer
from loopwright.adapters.wiring import App, Settings
from loopwright.engine.testing.chunks import (
    CallSpec,
    Cut,
    RawBytes,
    Response,
    content_chunk,
    finish_chunk,
    role_chunk,
    text_reply,
    tool_calls_reply,
)
from loopwright.schemas import Agent
from loopwright.workflows.agent.errors import AgentNotFoundError
from loopwright.workflows.agent.invariants import check_log

from ..adapters.http.live import Live, chat_body, post
from ..adapters.llm.live_stack import live_stack
from ..adapters.tools import reliability_tools

USER = {"role": "user", "content": "hi"}
TOOLS = "tests.adapters.tools.reliability_tools"
LLM_CODES = {"rate_limited", "server_error", "timeout", "stream_error", "bad_request"}
"""Error codes of the LLM taxonomy a garbled stream may give (never `handler_error`)."""


def agent(name: str = "ava", **kw: Any) -> Agent:
    kw.setdefault("model", "scripted")
    return Agent(id=f"agent-{name}", name=name, system="You are Ava.", **kw)


async def log_of(live: Live, name: str = "ava") -> list[Any]:
    found = await live.app.store.get_agent(name)
    return list(await live.app.store.list_messages(found.id))


# -- unknown agent ---------------------------------------------------------------------------


async def test_an_unknown_agent_is_a_typed_error_that_touches_nothing(tmp_path: Path) -> None:
    async with live_stack(tmp_path, [], agents=[agent()]) as live:
        reply = await post(f"{live.base_url}/chat/completions", chat_body([USER], model="nobody"))
        assert reply.status == 404
        assert reply.json()["error"]["code"] == "model_not_found"
        with pytest.raises(AgentNotFoundError, match="loopwright agent create nobody"):
            await live.app.turn("nobody", "hi")
        assert live.llm.requests == []
        assert await log_of(live) == []
        assert await live.app.store.list_runs() == []


# -- oversized input ---------------------------------------------------------------------------


async def test_a_turn_at_the_limit_is_stored_whole_and_one_past_it_is_refused(
    tmp_path: Path,
) -> None:
    options = ServerOptions(max_input_chars=100)
    script = [text_reply("Got it.")]
    async with live_stack(tmp_path, script, agents=[agent()], options=options) as live:
        url = f"{live.base_url}/chat/completions"
        # The limit is on the turn's new messages together, not on each one.
        over = [{"role": "user", "content": "a" * 60}, {"role": "user", "content": "b" * 41}]
        refused = await post(url, chat_body(over))
        assert refused.status == 400
        assert refused.json()["error"]["code"] == "input_too_large"
        assert "--max-input-chars" in refused.json()["error"]["message"]
        at_limit = [{"role": "user", "content": "a" * 60}, {"role": "user", "content": "b" * 40}]
        assert (await post(url, chat_body(at_limit))).stream().text == "Got it."
        log = await log_of(live)
        assert [(m.role, m.content) for m in log] == [
            ("user", "a" * 60),
            ("user", "b" * 40),
            ("assistant", "Got it."),
        ]
        assert len(live.llm.requests) == 1


async def test_the_cli_refuses_an_oversized_message_before_storing_it(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    async with FakeOpenAIServer([text_reply("Too long to read.")]) as upstream:
        app = await App.open(Settings(database_url=database))
        try:
            await app.create_agent(agent())
        finally:
            await app.aclose()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LOOPWRIGHT_"))}
        env.update(
            OPENAI_BASE_URL=upstream.base_url,
            OPENAI_API_KEY="k",
            LOOPWRIGHT_DATABASE_URL=database,
        )
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "loopwright"),
            *("chat", "ava", "-m", "x" * 120_000),  # one argv string holds at most 128 KiB
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert upstream.requests == []
    assert proc.returncode == 1
    assert b"Traceback" not in err
    app = await App.open(Settings(database_url=database))
    try:
        assert await app.store.list_messages("agent-ava") == []
    finally:
        await app.aclose()


# -- bad tool arguments and results ---------------------------------------------------------------

BAD_CALLS = [
    CallSpec(id="call_json", name="count_to", arguments='{"n": 3'),
    CallSpec(id="call_type", name="count_to", arguments='{"n": "many"}'),
    CallSpec(id="call_extra", name="count_to", arguments='{"n": 2, "upto": 9}'),
    CallSpec(id="call_list", name="count_to", arguments="[3]"),
    CallSpec(id="call_odd", name="odd_result", arguments='{"label": "x"}'),
    CallSpec(id="call_ok", name="count_to", arguments='{"n": 2}'),
]
ANSWERS = {
    "call_json": "not valid JSON",
    "call_type": "valid integer",
    "call_extra": "not a parameter of this tool",
    "call_list": "must be a JSON object",
    "call_odd": "not JSON-serialisable",
}


async def test_bad_arguments_and_results_are_error_results_and_the_turn_goes_on(
    tmp_path: Path,
) -> None:
    script = [tool_calls_reply(BAD_CALLS), text_reply("Only the last one worked.")]
    reliability_tools.CALLS.clear()
    async with live_stack(tmp_path, script, agents=[agent(tools=(TOOLS,))]) as live:
        reply = await post(f"{live.base_url}/chat/completions", chat_body([USER]))
        parsed = reply.stream()
        log = await log_of(live)
        context = (await live.app.store.load_context("agent-ava")).messages
        seen = live.llm.requests[1].body["messages"]
    assert (parsed.text, parsed.error) == ("Only the last one worked.", None)
    answers = {m.tool_call_id: m.content for m in log if m.role == "tool"}
    assert list(answers) == [c.id for c in BAD_CALLS]  # every call answered, in order
    for call_id, words in ANSWERS.items():
        error = json.loads(answers[call_id])
        assert error["status"] == "error" and words in error["error"], (call_id, error)
    assert answers["call_ok"] == "[1,2]"
    # The model saw exactly what is stored, and only well-formed calls ran.
    assert [(m["tool_call_id"], m["content"]) for m in seen if m["role"] == "tool"] == list(
        answers.items()
    )
    assert reliability_tools.CALLS == [("odd_result", {"label": "x"}), ("count_to", {"n": 2})]
    assert check_log(log, context) == []


# -- garbage in the LLM stream -------------------------------------------------------------------

HEARD = (role_chunk(), content_chunk("Half a"))
GARBAGE = {
    "invalid UTF-8 in a data frame": RawBytes(b'data: {"choices": "\xff\xfe"}\n\n'),
    "binary noise then EOF": RawBytes(b"\x00\x9f\xffnot sse at all\r\n\x01"),
    "a JSON array for a chunk": RawBytes(b"data: [1, 2, 3]\n\n"),
}


@pytest.mark.parametrize("name", list(GARBAGE))
async def test_garbage_after_output_is_a_typed_error_and_the_heard_text_is_kept(
    tmp_path: Path, name: str
) -> None:
    script = [Response(steps=(*HEARD, GARBAGE[name], Cut()), done=False)]
    async with live_stack(tmp_path, script, agents=[agent()]) as live:
        parsed = (await post(f"{live.base_url}/chat/completions", chat_body([USER]))).stream()
        log = await log_of(live)
    assert parsed.text == "Half a"
    assert parsed.error is not None and parsed.error["code"] == "stream_error"
    assert [(m.role, m.content, m.incomplete) for m in log] == [
        ("user", "hi", False),
        ("assistant", "Half a", True),
    ]


@pytest.mark.parametrize("name", list(GARBAGE))
async def test_garbage_before_output_is_a_typed_error_and_the_input_is_kept(
    tmp_path: Path, name: str
) -> None:
    script = [Response(steps=(role_chunk(), GARBAGE[name], Cut()), done=False)] * 3
    async with live_stack(tmp_path, script, agents=[agent()]) as live:
        parsed = (await post(f"{live.base_url}/chat/completions", chat_body([USER]))).stream()
        log = await log_of(live)
    assert parsed.text == ""
    assert parsed.error is not None and parsed.error["code"] == "stream_error"
    assert [(m.role, m.content) for m in log] == [("user", "hi")]


CHUNK_SHAPES = {
    "choices is a string": b'{"choices": "abc"}',
    "a choice is a number": b'{"choices": [5]}',
    "delta is a string": b'{"choices": [{"index": 0, "delta": "x"}]}',
    "tool_calls is a string": b'{"choices": [{"index": 0, "delta": {"tool_calls": "x"}}]}',
    "usage is a string": b'{"choices": [], "usage": "lots"}',
}


@pytest.mark.parametrize("name", list(CHUNK_SHAPES))
async def test_a_chunk_of_the_wrong_shape_is_a_stream_error_that_keeps_the_heard_text(
    tmp_path: Path, name: str
) -> None:
    frame = RawBytes(b"data: " + CHUNK_SHAPES[name] + b"\n\n")
    script = [Response(steps=(*HEARD, frame, finish_chunk("stop")))]
    async with live_stack(tmp_path, script, agents=[agent()]) as live:
        parsed = (await post(f"{live.base_url}/chat/completions", chat_body([USER]))).stream()
        log = await log_of(live)
    assert parsed.error is not None and parsed.error["code"] == "stream_error"
    assert [(m.role, m.content, m.incomplete) for m in log][1:] == [("assistant", "Half a", True)]


async def _garbled_turn(
    live: Live, routes: dict[str, list[Response]], n: int, text: str, noise: bytes
) -> None:
    name = f"g{n}"
    routes[name] = [
        Response(steps=(role_chunk(), content_chunk(text), RawBytes(noise), Cut()), done=False)
    ]
    await live.app.create_agent(agent(name, model=name))
    reply = await post(f"{live.base_url}/chat/completions", chat_body([USER], model=name))
    parsed = reply.stream()  # I5 and the wire contract, whatever the noise
    log = await log_of(live, name)
    said = [m for m in log if m.role == "assistant"]
    assert parsed.text == "".join(m.content or "" for m in said)  # I6
    assert log[0].content == "hi"  # the input is never lost
    if parsed.error is not None:
        assert parsed.error["code"] in LLM_CODES, parsed.error
        assert all(m.incomplete for m in said)


def test_random_bytes_in_a_stream_never_crash_a_turn(tmp_path: Path) -> None:
    routes: dict[str, list[Response]] = {}

    def respond(body: Mapping[str, Any]) -> Response:
        return routes[body["model"]].pop(0) if routes[body["model"]] else text_reply("again")

    async def main() -> None:
        counter = itertools.count()
        async with live_stack(tmp_path, respond) as live:
            loop = asyncio.get_running_loop()

            @settings(max_examples=max(10, settings().max_examples // 2))
            @given(st.text(min_size=1, max_size=12), st.binary(min_size=1, max_size=64))
            def check(text: str, noise: bytes) -> None:
                turn = _garbled_turn(live, routes, next(counter), text, noise)
                asyncio.run_coroutine_threadsafe(turn, loop).result(timeout=60)

            await asyncio.to_thread(check)  # Hypothesis drives; the turns run on this loop

    asyncio.run(main())
