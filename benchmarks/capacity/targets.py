"""The servers under load: the two reference relays and `loopwright serve`, each pinned."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from attrs import frozen

from capacity.procs import Child, free_port, python, wait_ready

AGENT = "bench"
RELAYS = {"sdk": "typed-SDK relay", "aiohttp": "aiohttp relay"}
LOOPWRIGHT = "loopwright"


@frozen(kw_only=True)
class Target:
    """A running server."""

    name: str
    """`sdk`, `aiohttp` or `loopwright`."""
    label: str
    """For the table."""
    base: str
    """`http://127.0.0.1:PORT`."""
    model: str
    """What the clients send as `model`."""
    child: Child
    """Its process."""

    @property
    def chat_url(self) -> str:
        """The streaming endpoint."""
        return f"{self.base}/v1/chat/completions"


class Skipped(Exception):
    """A target that cannot run here; the message says why and what to do."""


async def start_relay(kind: str, llm_url: str, core: int, nice: int = 0) -> Target:
    """Start a reference relay on `core` and wait until it answers."""
    port = free_port()
    args = python("capacity.relays", "--kind", kind, "--port", str(port), "--llm", llm_url)
    child = Child(args, core=core, ours=True, nice=nice)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(f"{base}/_lag", child)
    except BaseException:
        await child.aclose()
        raise
    return Target(name=kind, label=RELAYS[kind], base=base, model="fake", child=child)


def _loopwright_cli() -> str:
    found = shutil.which("loopwright", path=str(Path(sys.executable).parent))
    return found or shutil.which("loopwright") or "loopwright"


def loopwright_env(tmp: Path, llm_url: str) -> dict[str, str]:
    """The environment of every loopwright command: a fresh SQLite file, the fake LLM."""
    return {
        "LOOPWRIGHT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'capacity.sqlite'}",
        "OPENAI_BASE_URL": llm_url,
        "OPENAI_API_KEY": "x",
        # Asks the server for `GET /_lag` (see the module docstring of bench_capacity.py).
        "LOOPWRIGHT_LAG_PROBE": "1",
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False
    )


def prepare_loopwright(env: dict[str, str]) -> None:
    """Check that `loopwright serve` exists and create the agent. Raises: Skipped."""
    cli = _loopwright_cli()
    probe = _run([cli, "serve", "--help"], env)
    if probe.returncode != 0:
        raise Skipped(
            "`loopwright serve` is not available yet (`loopwright serve --help` exited "
            f"{probe.returncode}); the target is skipped, the relays still run"
        )
    # A template: the server makes one agent per session from it, so the calls run side by
    # side (turns of one agent are serialised, which would measure a queue).
    help_text = _run([cli, "agent", "create", "--help"], env).stdout
    if "--template" not in help_text:
        raise Skipped("`loopwright agent create` has no --template: every call would queue")
    created = _run([cli, "agent", "create", AGENT, "--model", "fake", "--template"], env)
    if created.returncode != 0:
        last = (created.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise Skipped(f"`loopwright agent create {AGENT} --template` failed: {last}")


async def start_loopwright(env: dict[str, str], core: int, nice: int = 0) -> Target:
    """Start `loopwright serve` on `core` (after `prepare_loopwright`)."""
    port = free_port()
    args = [_loopwright_cli(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    child = Child(args, core=core, env=env, nice=nice)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(f"{base}/v1/models", child)
    except RuntimeError as err:
        await child.aclose()
        raise Skipped(f"`loopwright serve` did not start: {err}") from err
    return Target(name=LOOPWRIGHT, label="loopwright serve", base=base, model=AGENT, child=child)


async def read_lag(session: aiohttp.ClientSession, target: Target) -> dict[str, Any] | None:
    """The server's lag since the last read, or None if it has no `GET /_lag`."""
    try:
        async with session.get(f"{target.base}/_lag") as response:
            if response.status != 200:
                return None
            payload: dict[str, Any] = await response.json()
            return payload if "p99_ms" in payload else None
    except (aiohttp.ClientError, ValueError):
        return None
