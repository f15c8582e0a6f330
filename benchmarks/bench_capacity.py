"""Capacity: concurrent streams one server core holds, loopwright against two bare relays.

Run: `python benchmarks/bench_capacity.py [--steps 200,500,1000,1500,2000] [--quick]
[--targets sdk,aiohttp,loopwright] [--duration 5] [--client raw|aiohttp] [--nice -10]
[--out results.json]`.

Issue 11, point 13. Each server runs in its own process pinned to one core (`taskset -c
0`): the typed-SDK relay and the aiohttp relay (capacity/relays.py: bare ASGI apps on
uvicorn + uvloop + httptools that store nothing) and `loopwright serve` (a fresh SQLite file;
`bench` created first with `loopwright agent create bench --model fake --template`, so each
call gets its own agent). The fake LLM (capacity/fake_llm.py: 20 content chunks per turn
50 ms apart, then finish, usage and `[DONE]`) and the clients (capacity/clients.py, in this
process) share the other core.

At each concurrency step, each target in turn gets N concurrent calls, each running streamed
turns back to back for `--duration` seconds, first turns spread over `--ramp` seconds. Per
step and target: completed / started turns, time to first token p50 / p99, the server's CPU
(user + system from /proc, every thread and child, minus its idle rate) per relayed chunk,
and its event-loop lag p99 from `GET /_lag`. Before each measurement our processes must be
idle (an overloaded server still writing abandoned streams must not bill the next target).

The lag hook `loopwright serve` needs: with `LOOPWRIGHT_LAG_PROBE=1` in its environment, a
task sleeping 10 ms in a loop on the server's event loop records its oversleep, and
`GET /_lag` returns `{"p99_ms": float, "max_ms": float, "samples": int}` since the previous
read, then resets (capacity/lag.py is the reference). Without it the lag shows `n/a`.

Verdicts: a step *holds* when every turn completed and the lag p99 is <= 20 ms; it is
*unclear* when it did not but the clients could not keep up (their lag p99 > 20 ms or their
core > 90 % busy) or the server has no lag probe; else it *fails*. A target's capacity is
bracketed by the highest step held and the lowest step above it that failed; the ratios
issue 11 sets (loopwright >= 5x the typed-SDK relay and >= 0.8x the aiohttp relay) are
printed as the range those brackets allow, with CPU per chunk ratios at the lowest common
step. A target is dropped after two steps in a row that did not hold (`--all-steps`: never).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import uvloop
from capacity.clients import Load, Plan, failures, run_load
from capacity.lag import percentile
from capacity.procs import (
    Child,
    core_times,
    cpu_seconds,
    idle_rate,
    python,
    set_priority,
    wait_quiet,
)
from capacity.report import Row, summary, summary_text, table
from capacity.targets import (
    RELAYS,
    Skipped,
    Target,
    loopwright_env,
    prepare_loopwright,
    read_lag,
    start_loopwright,
    start_relay,
)

STEPS: tuple[int, ...] = (200, 500, 1000, 1500, 2000)
QUICK_STEPS: tuple[int, ...] = (20, 50)
TARGETS = ("sdk", "aiohttp", "loopwright")
SETTLE = 0.5


@attrs.frozen(kw_only=True)
class Options:
    """The command line, checked."""

    steps: tuple[int, ...]
    targets: tuple[str, ...]
    duration: float
    ramp: float
    turn_timeout: float
    server_core: int
    other_core: int
    all_steps: bool
    client: str
    nice: int
    out: Path | None


def parse(argv: Sequence[str] | None = None) -> Options:
    """Options from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default=None, help="concurrency steps, comma-separated")
    parser.add_argument("--quick", action="store_true", help="a smoke run: steps 20,50, 2 s")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--duration", type=float, default=None, help="seconds of turns per step")
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds to start all calls")
    parser.add_argument("--turn-timeout", type=float, default=30.0)
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--other-core", type=int, default=1, help="fake LLM and clients")
    parser.add_argument("--all-steps", action="store_true", help="never drop a target")
    parser.add_argument(
        "--client", choices=("raw", "aiohttp"), default="raw", help="see capacity/clients.py"
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of every process and its autogroup (e.g. -10, as root, on a shared machine)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write JSON results here")
    args = parser.parse_args(argv)
    steps = QUICK_STEPS if args.quick else STEPS
    if args.steps:
        steps = tuple(sorted(int(s) for s in args.steps.split(",")))
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"--targets: unknown {sorted(unknown)}; choose from {', '.join(TARGETS)}")
    duration = args.duration if args.duration is not None else (2.0 if args.quick else 5.0)
    return Options(
        steps=steps,
        targets=targets,
        duration=duration,
        ramp=args.ramp,
        turn_timeout=args.turn_timeout,
        server_core=args.server_core,
        other_core=args.other_core,
        all_steps=args.all_steps,
        client=args.client,
        nice=args.nice,
        out=args.out,
    )


def say(text: str) -> None:
    """Progress on stderr (stdout is the report)."""
    print(text, file=sys.stderr, flush=True)


async def start_targets(
    opts: Options, llm_url: str, tmp: Path, stack: AsyncExitStack
) -> list[Target]:
    """Start every requested target that can run; say why one is skipped."""
    targets: list[Target] = []
    for name in opts.targets:
        try:
            if name in RELAYS:
                target = await start_relay(name, llm_url, opts.server_core, opts.nice)
            else:
                env = loopwright_env(tmp, llm_url)
                await asyncio.to_thread(prepare_loopwright, env)
                target = await start_loopwright(env, opts.server_core, opts.nice)
        except Skipped as why:
            say(f"skipped {name}: {why}")
            continue
        stack.push_async_callback(target.child.aclose)
        targets.append(target)
    return targets


@attrs.frozen
class Meters:
    """Counters read before and after a step; `minus` gives the step's share."""

    server: float
    llm: float
    core_tasks: float
    core_softirq: float
    core_stolen: float

    @classmethod
    async def read(cls, target: Target, llm: Child, core: int) -> Meters:
        tasks, softirq, stolen = await core_times(core)
        server, llm_cpu = await cpu_seconds(target.child.pid), await cpu_seconds(llm.pid)
        return cls(server, llm_cpu, tasks, softirq, stolen)

    def minus(self, before: Meters) -> Meters:
        return Meters(
            *(a - b for a, b in zip(attrs.astuple(self), attrs.astuple(before), strict=True))
        )


async def measure(
    opts: Options, target: Target, streams: int, llm: Child, idle: float, quiet: Sequence[int]
) -> Row:
    """One target at one step: wait for quiet, reset the lag, load, read everything."""
    busy = await wait_quiet(quiet, opts.server_core)
    if busy >= 0.15:
        say(f"warning: core {opts.server_core} is {busy:.0%} busy with other work; going on")
    plan = Plan(
        url=target.chat_url,
        model=target.model,
        concurrency=streams,
        duration=opts.duration,
        ramp=opts.ramp,
        turn_timeout=opts.turn_timeout,
        label=f"{target.name}-{streams}-{time.monotonic_ns()}",
        client=opts.client,
    )
    async with aiohttp.ClientSession() as session:
        await read_lag(session, target)  # resets the window
        before = await Meters.read(target, llm, opts.server_core)
        start = time.perf_counter()
        load = await run_load(plan)
        lag = await read_lag(session, target)
    await asyncio.sleep(SETTLE)  # work after [DONE] (background states) belongs to the step
    used = (await Meters.read(target, llm, opts.server_core)).minus(before)
    wall = time.perf_counter() - start
    return _row(target, streams, load, used, idle * wall, wall, lag)


def _row(
    target: Target,
    streams: int,
    load: Load,
    used: Meters,
    idle_cpu: float,
    wall: float,
    lag: dict[str, Any] | None,
) -> Row:
    ttfts = [t.ttft * 1e3 for t in load.turns if t.ok and t.ttft is not None]
    chunks = sum(t.frames for t in load.turns)
    work = max(0.0, used.server - idle_cpu)
    return Row(
        target=target.name,
        label=target.label,
        concurrency=streams,
        started=load.started,
        completed=sum(t.ok for t in load.turns),
        failures=failures(load.turns),
        ttft_p50_ms=round(percentile(ttfts, 0.5), 2),
        ttft_p99_ms=round(percentile(ttfts, 0.99), 2),
        chunks=chunks,
        server_cpu_s=round(used.server, 3),
        idle_cpu_s=round(idle_cpu, 3),
        cpu_us_per_chunk=round(work / chunks * 1e6, 1) if chunks else 0.0,
        lag_p99_ms=None if lag is None else float(lag["p99_ms"]),
        lag_max_ms=None if lag is None else float(lag["max_ms"]),
        wall_s=round(wall, 2),
        client_lag_p99_ms=float(load.client_lag["p99_ms"]),
        client_cpu_s=round(load.client_cpu, 3),
        llm_cpu_s=round(used.llm, 3),
        other_core_busy=round((load.client_cpu + used.llm) / load.wall, 3),
        server_core_neighbours=round(max(0.0, used.core_tasks - used.server) / wall, 3),
        server_core_softirq=round(used.core_softirq / wall, 3),
        server_core_stolen=round(used.core_stolen / wall, 3),
    )


async def warm_up(targets: Sequence[Target]) -> None:
    """A few untimed turns each: imports, caches, first connections."""
    for target in targets:
        plan = Plan(
            url=target.chat_url,
            model=target.model,
            concurrency=10,
            duration=0.5,
            ramp=0.1,
            turn_timeout=30.0,
            label=f"warm-{target.name}-{time.monotonic_ns()}",
        )
        load = await run_load(plan)
        if not any(t.ok for t in load.turns):
            say(f"warning: {target.label} completed no warm-up turn: {failures(load.turns)}")


async def run(opts: Options) -> list[Row]:
    """Start everything, run every step on every target, stop everything."""
    rows: list[Row] = []
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="capacity-")))
        llm = Child(
            python("capacity.fake_llm"),
            core=opts.other_core,
            capture=True,
            ours=True,
            nice=opts.nice,
        )
        stack.push_async_callback(llm.aclose)
        llm_url = await asyncio.to_thread(llm.first_line)
        targets = await start_targets(opts, llm_url, tmp, stack)
        await warm_up(targets)
        quiet = [llm.pid, *(t.child.pid for t in targets)]
        await wait_quiet(quiet, opts.server_core)
        idle = {t.name: await idle_rate(t.child.pid) for t in targets}
        say("idle CPU, subtracted: " + ", ".join(f"{n} {r:.1%}" for n, r in idle.items()))
        misses = dict.fromkeys((t.name for t in targets), 0)
        for streams in opts.steps:
            for target in targets:
                if misses[target.name] >= 2 and not opts.all_steps:
                    continue
                row = await measure(opts, target, streams, llm, idle[target.name], quiet)
                misses[target.name] = 0 if row.verdict == "holds" else misses[target.name] + 1
                say(table([row]).splitlines()[-1])
                rows.append(row)
    return rows


def raise_fd_limit() -> None:
    """Each stream holds a few sockets in the client and the fake LLM processes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: Sequence[str] | None = None) -> None:
    opts = parse(argv)
    raise_fd_limit()
    os.sched_setaffinity(0, {opts.other_core})
    if opts.nice:
        set_priority(os.getpid(), opts.nice)
    say(
        f"steps {list(opts.steps)}, {opts.duration:.0f} s each, servers on core "
        f"{opts.server_core}, clients and fake LLM on core {opts.other_core}"
    )
    rows = uvloop.run(run(opts))
    result = summary(rows)
    print(table(rows))
    print()
    print(summary_text(result))
    if opts.out is not None:
        payload = {
            "options": {
                k: str(v) if isinstance(v, Path) else v for k, v in attrs.asdict(opts).items()
            },
            "rows": [attrs.asdict(r) | {"verdict": r.verdict} for r in rows],
            "summary": result,
        }
        opts.out.write_text(json.dumps(payload, indent=2) + "\n")
        say(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
