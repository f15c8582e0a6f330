"""The benchmark's processes: pinned with `taskset`, timed from /proc, stopped by their pid."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp

BENCHMARKS = Path(__file__).resolve().parent.parent
_TICK = os.sysconf("SC_CLK_TCK")


class Child:
    """A child process pinned to one core; stopped (SIGTERM, then SIGKILL) by `stop()`."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        core: int,
        env: Mapping[str, str] | None = None,
        capture: bool = False,
        ours: bool = False,
        nice: int = 0,
    ) -> None:
        # taskset execs the command, so the pid is the server's own.
        environ = {**os.environ, **(env or {})}
        if ours:  # a module of benchmarks/capacity
            environ["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(BENCHMARKS), environ.get("PYTHONPATH", "")) if p
            )
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(core), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            env=environ,
            text=True,
            start_new_session=True,  # its own autogroup: the scheduler's weight is its own
        )
        self.pid = self.proc.pid
        if nice:
            set_priority(self.pid, nice)

    def first_line(self) -> str:
        """The first line the child printed (it must have been started with capture=True)."""
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def stop(self) -> None:
        """Close its stdin, terminate it, kill it if it does not go."""
        if self.proc.poll() is not None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    async def aclose(self) -> None:
        """`stop()` off the event loop."""
        await asyncio.to_thread(self.stop)


def set_priority(pid: int, nice: int) -> None:
    """Give `pid` niceness `nice`, and its session's autogroup too (with autogroups on,
    niceness alone does not weigh against other sessions). Raises: PermissionError."""
    os.setpriority(os.PRIO_PROCESS, pid, nice)
    group = Path(f"/proc/{pid}/autogroup")
    if group.exists():
        group.write_text(f"{nice}\n")


def python(module: str, *args: str) -> list[str]:
    """The command running `module` of benchmarks/ with this interpreter."""
    return [sys.executable, "-m", module, *args]


def free_port() -> int:
    """A port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _own_cpu(pid: int) -> tuple[float, int]:
    """(user + system CPU seconds of every thread, parent pid), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as file:
        fields = file.read().rsplit(b")", 1)[1].split()
    # After the command: state(0) ppid(1) ... utime(11) stime(12).
    return (int(fields[11]) + int(fields[12])) / _TICK, int(fields[1])


def cpu_seconds_sync(pid: int) -> float:
    """CPU seconds of `pid` and its live descendants (a server may fork workers)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                times[int(entry)], parents[int(entry)] = _own_cpu(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    tree, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(times.get(p, 0.0) for p in tree)


async def cpu_seconds(pid: int) -> float:
    """`cpu_seconds_sync` off the event loop."""
    return await asyncio.to_thread(cpu_seconds_sync, pid)


def core_times_sync(core: int) -> tuple[float, float, float]:
    """(tasks, softirq, stolen) seconds of core `core` since boot, from /proc/stat.

    Tasks is user + nice + system + irq: every process's time, ours and our neighbours'.
    Softirq is kernel work such as loopback TCP's receive side (billed to the core, not to a
    process). Stolen is time the hypervisor ran something else while this core wanted to."""
    with open("/proc/stat", "rb") as file:
        for line in file:
            if line.startswith(b"cpu%d " % core):
                t = [int(v) for v in line.split()[1:]]
                return (t[0] + t[1] + t[2] + t[5]) / _TICK, t[6] / _TICK, t[7] / _TICK
    raise LookupError(f"core {core} is not in /proc/stat; choose one `nproc` lists")


async def core_times(core: int) -> tuple[float, float, float]:
    """`core_times_sync` off the event loop."""
    return await asyncio.to_thread(core_times_sync, core)


async def idle_rate(pid: int, seconds: float = 3.0) -> float:
    """CPU seconds per second `pid` burns with no load (its timers, the lag probe)."""
    before = await cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (await cpu_seconds(pid) - before) / seconds


async def wait_ready(url: str, child: Child, seconds: float = 60.0) -> None:
    """Wait until `url` answers at all. Raises: RuntimeError if the child exits or is slow."""
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{url}: the server exited with code {child.proc.returncode}")
            try:
                async with session.get(url) as response:
                    await response.read()
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)
    raise RuntimeError(f"{url}: no answer after {seconds:.0f} s")


async def wait_quiet(pids: Sequence[int], core: int, *, cap: float = 20.0) -> float:
    """Wait until our processes are idle and the server core is nearly so; returns the share
    of that core others still used in the last half second (after `cap` seconds we go on).

    An overloaded server is still writing streams its clients gave up on, and a neighbour's
    test run may hold the core: the next measurement must pay for neither."""
    start = time.monotonic()
    busy = 1.0
    while time.monotonic() - start < cap:
        ours, core_before = sum([await cpu_seconds(p) for p in pids]), await core_times(core)
        await asyncio.sleep(0.5)
        ours = sum([await cpu_seconds(p) for p in pids]) - ours
        busy = ((await core_times(core))[0] - core_before[0]) / 0.5
        if ours < 0.05 and busy < 0.15:  # 10 % of a core: their timers and lag probes
            break
    return busy
