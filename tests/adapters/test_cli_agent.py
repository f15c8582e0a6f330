"""The agent CLI contract, run as real processes against the fake OpenAI server on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.llm.fake_server import FakeOpenAIServer
from loopwright.engine.testing.chunks import (
    CallSpec,
    Reset,
    Response,
    content_chunk,
    role_chunk,
    text_reply,
    tool_calls_reply,
)

BIN = Path(sys.executable).parent / "loopwright"
TOOLS = '''
def get_weather(city: str) -> dict:
    """Weather for a city.

    Args:
        city: The city.
    """
    return {"city": city, "forecast": "rain"}
'''


async def cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(BIN),
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "my_tools.py").write_text(TOOLS)
    return tmp_path


def environment(server: FakeOpenAIServer, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LOOPWRIGHT_"))}
    env.update(
        OPENAI_BASE_URL=server.base_url,
        OPENAI_API_KEY="test-key",
        LOOPWRIGHT_DATABASE_URL=f"sqlite:///{workdir / 'cli.db'}",
        PYTHONPATH=str(workdir),
    )
    return env


async def test_create_chat_and_messages(workdir: Path) -> None:
    call = CallSpec(
        id="call_1", name="get_weather", arguments='{"pre_exec_msg": "Checking.", "city": "Oslo"}'
    )
    script = [tool_calls_reply([call]), text_reply("Rain in Oslo."), text_reply("Bye.")]
    async with FakeOpenAIServer(script) as server:
        env = environment(server, workdir)
        code, out, err = await cli(
            "agent",
            "create",
            "ada",
            "--model",
            "m1",
            "--block",
            "human=Ada Lovelace",
            "--tools",
            "my_tools",
            env=env,
            cwd=workdir,
        )
        assert code == 0, err
        assert "created agent ada" in out

        code, out, err = await cli("chat", "ada", "-m", "weather in Oslo?", env=env, cwd=workdir)
        assert (code, out) == (0, "Checking. Rain in Oslo.\n"), err

        code, out, err = await cli("chat", "ada", "--json", "-m", "bye", env=env, cwd=workdir)
        assert code == 0, err
        events = [json.loads(line) for line in out.splitlines()]
        assert all("type" in e for e in events)
        assert events[-1] == {"type": "RunFinished", "stop_reason": "final"}
        assert "".join(e["text"] for e in events if e["type"] == "TextDelta") == "Bye."

        code, out, err = await cli("agent", "messages", "ada", "--json", env=env, cwd=workdir)
        assert code == 0, err
        log = [json.loads(line) for line in out.splitlines()]
        assert [m["role"] for m in log] == [
            "user",
            "assistant",
            "tool",
            "assistant",
            "user",
            "assistant",
        ]
        assert log[1]["tool_calls"] == [
            {"id": "call_1", "name": "get_weather", "arguments": call.arguments}
        ]
        assert log[2]["tool_call_id"] == "call_1"
        assert json.loads(log[2]["content"]) == {"city": "Oslo", "forecast": "rain"}
        assert set(log[0]) >= {"id", "role", "content", "tool_calls", "tool_call_id"}

    body = server.requests[0].body
    assert body["model"] == "m1"
    assert "Ada Lovelace" in body["messages"][0]["content"]


async def test_a_failed_run_exits_1_with_the_error_on_stderr(workdir: Path) -> None:
    broken = Response(steps=(role_chunk(), content_chunk("Half"), Reset()))
    async with FakeOpenAIServer([broken]) as server:
        env = environment(server, workdir)
        assert (await cli("agent", "create", "bob", env=env, cwd=workdir))[0] == 0
        code, out, err = await cli("chat", "bob", "-m", "hi", env=env, cwd=workdir)
    assert code == 1
    assert out == "Half\n"
    assert "run failed" in err and "Traceback" not in err


async def test_unknown_agent_and_bad_block_are_clear_errors(workdir: Path) -> None:
    async with FakeOpenAIServer([]) as server:
        env = environment(server, workdir)
        code, _, err = await cli("chat", "nobody", "-m", "hi", env=env, cwd=workdir)
        assert code == 1
        assert "no agent named 'nobody'" in err and "Traceback" not in err
        code, _, err = await cli("agent", "create", "x", "--block", "novalue", env=env, cwd=workdir)
        assert code == 1 and "LABEL=VALUE" in err
        code, _, err = await cli(
            "agent", "create", "x", "--tools", "no.such.module", env=env, cwd=workdir
        )
        assert code == 1 and "no.such.module" in err and "Traceback" not in err


async def test_demo_runs_with_no_key_and_no_network(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LOOPWRIGHT_"))}
    code, out, err = await cli("demo", env=env, cwd=tmp_path)
    assert code == 0, err
    assert "Paris" in out
    assert "execute_tools" in err and "states visited" in err


def test_runs_lists_unfinished_runs_id_first(workdir: Path, capsys: Any, monkeypatch: Any) -> None:
    from loopwright.adapters.cli import main

    monkeypatch.setenv("LOOPWRIGHT_DATABASE_URL", f"sqlite:///{workdir / 'runs.db'}")
    assert main(["runs", "--unfinished"]) == 0
    assert capsys.readouterr().out == ""
