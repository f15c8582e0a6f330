"""Processes of the crash trials: the fork server of workers, and the real `loopwright` CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
"""The repository: on PYTHONPATH, so `tests.reliability.crash_tools` imports everywhere."""
BIN = Path(sys.executable).parent / "loopwright"


def base_env() -> dict[str, str]:
    """The environment of every trial process: no inherited LLM or store settings, and the
    tools' module importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LOOPWRIGHT_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


async def cli(*args: str, env: Mapping[str, str]) -> tuple[int, str, str]:
    """Run `loopwright ARGS...` in a new process: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        str(BIN),
        *args,
        env=dict(env),
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Workers:
    """`python -m tests.reliability.crash_worker`: forks one worker process per trial."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        self._proc: asyncio.subprocess.Process | None = None
        self._lines: dict[int, asyncio.Queue[str]] = {}
        self._ended: dict[int, asyncio.Event] = {}
        self.stray: list[str] = []
        """Lines that name no trial (a worker's stray output)."""
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Workers:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.reliability.crash_worker",
            env=self._env,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout=60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if self._reader is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            async for raw in self._proc.stdout:
                trial, _, what = raw.decode().rstrip("\n").partition(" ")
                if not trial.isdigit():
                    self.stray.append(raw.decode())
                    continue
                lines, ended = self._trial(int(trial))
                lines.put_nowait(what)
                if what.startswith("exit "):
                    ended.set()
        finally:  # the server is gone: nobody waits for a line that cannot come
            for number, queue in self._lines.items():
                queue.put_nowait("exit -1000")
                self._ended[number].set()

    def _trial(self, trial: int) -> tuple[asyncio.Queue[str], asyncio.Event]:
        if trial not in self._lines:
            self._lines[trial] = asyncio.Queue()
            self._ended[trial] = asyncio.Event()
        return self._lines[trial], self._ended[trial]

    async def _send(self, message: Mapping[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(message).encode() + b"\n")
        await self._proc.stdin.drain()

    async def start(self, spec: Mapping[str, Any]) -> Worker:
        """Fork a worker for this trial."""
        trial = int(spec["trial"])
        lines, ended = self._trial(trial)
        await self._send(spec)
        first = await asyncio.wait_for(lines.get(), timeout=PATIENCE)
        assert first.startswith("pid "), first

        async def kill() -> None:
            await self._send({"kill": trial})

        return Worker(lines, ended, kill)


PATIENCE = 60.0
"""Seconds a worker may take to show a line it owes (a worker that hangs fails the test)."""


class Worker:
    """One trial's worker process, seen through its lines."""

    def __init__(
        self,
        lines: asyncio.Queue[str],
        ended: asyncio.Event,
        kill: Callable[[], Awaitable[None]],
    ) -> None:
        self.lines = lines
        self.ended = ended
        """Set once the process is gone (its `exit` line was read from the fork server)."""
        self._kill = kill
        self.seen: list[str] = []
        self.exit: int | None = None

    @property
    def killed(self) -> bool:
        """Whether a SIGKILL ended it."""
        return self.exit == -signal.SIGKILL

    async def _line(self) -> str | None:
        """The next line; None once the process is gone."""
        if self.exit is not None:
            return None
        line = await self.lines.get()
        self.seen.append(line)
        if line.startswith("exit "):
            self.exit = int(line.split()[1])
            return None
        return line

    async def unless_ended(self, waiting: Awaitable[Any]) -> bool:
        """Wait for `waiting`; False (and `waiting` cancelled) if the process ends first."""
        task = asyncio.ensure_future(waiting)
        ended = asyncio.ensure_future(self.ended.wait())
        await asyncio.wait({task, ended}, timeout=PATIENCE, return_when=asyncio.FIRST_COMPLETED)
        for pending in (task, ended):
            pending.cancel()
        if not (task.done() or ended.done()):
            raise TimeoutError(f"the worker showed no progress in {PATIENCE} s: {self.seen}")
        return task.done() and not task.cancelled()

    async def wait_for(self, line: str, count: int = 1) -> bool:
        """Wait for the `count`-th line equal to `line`; False if the process ended first."""
        async with asyncio.timeout(PATIENCE):
            while count:
                got = await self._line()
                if got is None:
                    return False
                count -= got == line
        return True

    async def kill_after(self, seconds: float) -> None:
        """SIGKILL after `seconds` unless the process ends first; wait until it is gone.

        The fork server sends the signal: it reaps its children itself, so a pid it kills
        is never one the system has given to another process since."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while await self._line() is not None:
                    pass
        if self.exit is None:
            await self._kill()
        async with asyncio.timeout(PATIENCE):
            while await self._line() is not None:
                pass
