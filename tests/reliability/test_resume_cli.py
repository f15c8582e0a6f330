"""The `runs --unfinished` / `resume` contract on runs a SIGKILL left behind: one run per line,
its id first, no header; `resume` exits 0 when the run finishes, 1 when it fails."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loopwright.adapters.llm.fake_server import FakeOpenAIServer
from loopwright.adapters.storage.sql import open_store
from loopwright.engine.testing.chunks import CallSpec, Response, Status, text_reply
from loopwright.engine.testing.chunks import tool_calls_reply as calls_reply
from loopwright.schemas import Agent

from .harness import Workers, base_env, cli
from .plan import TOOLS_MODULE


def respond(body: Mapping[str, Any]) -> Response:
    """Agent `ok`'s turn calls `charge`, then ends; agent `bad`'s model is gone after that."""
    messages = body["messages"]
    trial = "ok" if "trial ok" in json.dumps(messages) else "bad"
    if messages[-1]["role"] == "user":
        token = f"call-{trial}"
        arguments = json.dumps({"token": token})
        return calls_reply([CallSpec(id=token, name="charge", arguments=arguments)])
    if trial == "bad":
        return Response(steps=(Status(status=400, error={"message": "no such model"}),))
    return text_reply("Charged.")


async def test_resume_a_killed_run_exit_0_when_it_finishes_1_when_it_fails(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    store = await open_store(url)
    for name in ("ok", "bad"):
        await store.create_agent(Agent(id=f"agent-{name}", name=name, tools=(TOOLS_MODULE,)))
    await store.aclose()
    async with FakeOpenAIServer(respond) as server:
        env = {
            **base_env(),
            "LOOPWRIGHT_DATABASE_URL": url,
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": "k",
            "LOOPWRIGHT_CRASH_EFFECTS": str(tmp_path / "effects"),
        }
        async with Workers(env) as workers:
            for trial, name in enumerate(("ok", "bad")):
                worker = await workers.start(
                    {
                        "trial": trial,
                        "env": env,
                        "agent": name,
                        "turns": [[f"run-{name}", f"trial {name} turn 0"]],
                        "pause_ms": 60_000,
                        "pause_in": ["execute_tools"],  # killed in that pause
                    }
                )
                assert await worker.wait_for("state execute_tools")
                await worker.kill_after(0)
                assert worker.killed

        code, out, err = await cli("runs", "--unfinished", env=env)
        assert code == 0, err
        assert out.splitlines() == [  # newest first
            "run-bad\tlow_latency_agent\trunning\texecute_tools\t-\tagent-bad",
            "run-ok\tlow_latency_agent\trunning\texecute_tools\t-\tagent-ok",
        ]
        code, out, err = await cli("resume", "run-ok", env=env)
        assert (code, out) == (0, "Charged.\n"), err

        # Each id is tried; one that fails, or cannot be resumed, makes it exit 1.
        code, _, err = await cli("resume", "run-bad", "no-such-run", "run-ok", env=env)
        assert code == 1
        assert "run failed: bad_request" in err
        assert "no run 'no-such-run'" in err and "Traceback" not in err
        assert "'run-ok'" in err and "already ended" in err

        code, out, err = await cli("runs", "--unfinished", env=env)
        assert (code, out) == (0, ""), err
    # Killed before the intent was recorded, the charges ran once, at the resume.
    effects = (tmp_path / "effects").read_text().splitlines()
    assert sorted(effects) == ["charge call-bad", "charge call-ok"]
