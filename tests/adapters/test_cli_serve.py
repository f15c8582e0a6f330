"""`loopwright serve` as a user runs it: a subprocess on a free port, answered by any client."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import aiohttp

from loopwright.adapters.cli import main
from loopwright.adapters.llm.fake_server import FakeOpenAIServer
from loopwright.engine.testing.chunks import text_reply


def test_serve_refuses_a_public_address_without_keys(capsys: object) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LOOPWRIGHT_API_KEYS"}
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    finally:
        os.environ.clear()
        os.environ.update(old)
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "refusing to listen on 0.0.0.0" in err
    assert "--insecure" in err


def test_serve_rejects_a_broken_key_file(tmp_path: Path, capsys: object) -> None:
    keys = tmp_path / "keys"
    keys.write_text("only-a-tenant\n")
    assert main(["serve", "--keys", str(keys), "--port", "0"]) == 2
    assert "expected `tenant key`" in capsys.readouterr().err  # type: ignore[attr-defined]


async def test_serve_answers_a_turn(tmp_path: Path) -> None:
    async with FakeOpenAIServer([text_reply("Served.")]) as llm:
        env = {
            **os.environ,
            "LOOPWRIGHT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_API_KEY": "x",
            "LOOPWRIGHT_API_KEYS": "t1:secret",
        }
        env.pop("CI", None)
        create = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "loopwright.adapters.cli",
            "agent",
            "create",
            "ava",
            "--model",
            "scripted",
            env=env,
        )
        assert await create.wait() == 0
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "loopwright.adapters.cli",
            "serve",
            "--port",
            "0",
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stderr is not None
            line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
            match = re.search(r"http://[\d.]+:\d+/v1", line)
            assert match, line
            base = match.group(0)
            async with aiohttp.ClientSession() as session:
                async with session.get(base.removesuffix("/v1") + "/healthz") as r:
                    assert r.status == 200
                async with session.get(f"{base}/models") as r:
                    assert r.status == 401
                # The agent made by the CLI belongs to the default tenant, not to t1.
                headers = {"authorization": "Bearer secret"}
                async with session.get(f"{base}/models", headers=headers) as r:
                    assert (await r.json())["data"] == []
        finally:
            proc.terminate()
            await proc.wait()


def test_serve_parses_every_option() -> None:
    from loopwright.adapters.cli import build_parser

    args = build_parser().parse_args(
        [
            "serve",
            "--allow-tools",
            "a.b",
            "--allow-tools",
            "c",
            "--busy-policy",
            "reject",
            "--turn-window",
            "9",
            "--max-input-chars",
            "10",
            "--ping",
            "2",
        ]
    )
    assert args.allow_tools == ["a.b", "c"]
    assert (args.busy_policy, args.turn_window, args.max_input_chars, args.ping) == (
        "reject",
        9.0,
        10,
        2.0,
    )
