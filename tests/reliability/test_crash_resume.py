"""Crash and resume (issue 5, point 1), proven by SIGKILL.

Each trial forks a worker (tests/reliability/crash_worker.py) that runs an agent's turns
against a `FakeOpenAIServer` in this process, and kills it with SIGKILL at a moment drawn from
the trial's seed: aimed at a state (before the request, mid-stream, mid-tool, during persist)
or at random. Trials run in batches that share a store (a SQLite file; every fourth batch a
PostgreSQL schema) and a model server, as workers share a database, one agent per trial. Once
a batch's workers are dead, the real CLI, in new processes, lists the unfinished runs
(`loopwright runs --unfinished`) and resumes them (`loopwright resume RUN_ID...`, which must
exit 0). Afterwards each agent's log must hold every message exactly once, as whole turns in
order, as a run without the crash would have stored them (I3, I7), with every tool call
answered (I1); a non-idempotent call has run at most once (its side effects are counted in a
file), and exactly the results a kill lost are answered "lost in a crash".

Trials: `LOOPWRIGHT_CRASH_TRIALS`, else 100 with `HYPOTHESIS_PROFILE=ci`, else 12; the seed is
`LOOPWRIGHT_CRASH_SEED` (a failure names its trial and seed: rerun with both to replay it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from attrs import frozen

from loopwright.adapters.llm.fake_server import FakeOpenAIServer
from loopwright.adapters.storage.sql import open_store
from loopwright.schemas import Agent, Message, RunRecord
from tests.pg import postgres_schema, require_postgres

from .harness import Worker, Workers, base_env, cli
from .plan import TOOLS_MODULE, TrialPlan, make_plan, responder
from .verdict import LOST_RESULT, STATES, landed, open_intents, verify

CI = os.environ.get("HYPOTHESIS_PROFILE") == "ci"
TRIALS = int(os.environ.get("LOOPWRIGHT_CRASH_TRIALS") or (100 if CI else 12))
SEED = int(os.environ.get("LOOPWRIGHT_CRASH_SEED") or 5)
BATCH = 10
"""Trials sharing a store, a model server and the CLI processes that resume them, as workers
share a database: one `runs --unfinished` and one `resume` per batch keep 100 trials cheap."""
PARALLEL = 3
"""Batches in flight: their workers mostly wait (on the model, on pauses), on two cores."""


@frozen
class Outcome:
    """One trial's result."""

    plan: TrialPlan
    where: str
    """Where the kill landed (`not_killed` when the worker ended first)."""
    lost: int
    """Tool results reported lost to the model."""
    problems: Sequence[str]
    postgres: bool


@frozen
class Snapshot:
    """What a trial left in the store."""

    records: Mapping[str, RunRecord | None]
    log: Sequence[Message]
    context: Sequence[Message]


def crash_agent(plan: TrialPlan) -> Agent:
    return Agent(id=f"agent-{plan.agent}", name=plan.agent, model="m", tools=(TOOLS_MODULE,))


def batches(trials: int) -> list[list[TrialPlan]]:
    """The trials in batches of `BATCH`."""
    plans = [make_plan(n, SEED) for n in range(trials)]
    return [plans[i : i + BATCH] for i in range(0, trials, BATCH)]


async def add_agents(url: str, plans: Sequence[TrialPlan]) -> None:
    store = await open_store(url)
    try:
        for plan in plans:
            await store.create_agent(crash_agent(plan))
    finally:
        await store.aclose()


async def snapshot(url: str, plans: Sequence[TrialPlan]) -> dict[int, Snapshot]:
    store = await open_store(url)
    try:
        found = {}
        for plan in plans:
            agent = crash_agent(plan).id
            ids = [plan.run_id(t) for t in range(len(plan.turns))]
            found[plan.trial] = Snapshot(
                records={run_id: await store.load(run_id) for run_id in ids},
                log=await store.list_messages(agent),
                context=(await store.load_context(agent)).messages,
            )
    finally:
        await store.aclose()
    return found


class Requests:
    """The (turn, step) of each request a trial's model got, in order; awaitable."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []
        self._arrived = asyncio.Event()

    def append(self, key: tuple[int, int], /) -> None:
        self.keys.append(key)
        self._arrived.set()

    async def count(self, count: int) -> None:
        while len(self.keys) < count:
            self._arrived.clear()
            await self._arrived.wait()


async def kill(
    workers: Workers, plan: TrialPlan, env: Mapping[str, str], requests: Requests
) -> Worker:
    """Start the trial's worker and kill it where the plan aims (unless it ends first)."""
    turns = [[plan.run_id(t), plan.user_text(t)] for t in range(len(plan.turns))]
    spec = {"trial": plan.trial, "env": dict(env), "agent": plan.agent, "turns": turns}
    worker = await workers.start({**spec, "pause_ms": plan.pause_ms, "hold": plan.hold()})
    if plan.aim in (None, "stream"):  # timed from the model's side: past the start-up
        reached = await worker.unless_ended(requests.count(plan.occurrence + 1))
    else:
        reached = await worker.wait_for(f"state {plan.aim}", plan.occurrence + 1)
    if reached:
        await worker.kill_after(plan.delay_ms / 1000)
    return worker


async def resume_unfinished(env: Mapping[str, str], at_kill: Mapping[int, Snapshot]) -> list[str]:
    """`loopwright runs --unfinished`, then `loopwright resume` with every id it printed: what
    went wrong (a problem is reported, not raised: the other batches go on)."""
    code, out, err = await cli("runs", "--unfinished", env=env)
    if code != 0:
        return [f"`loopwright runs --unfinished` exited {code}: {err}"]
    ids = [line.split("\t")[0] for line in out.splitlines()]
    unfinished = [
        run_id
        for snap in at_kill.values()
        for run_id, record in snap.records.items()
        if record is not None and record.status == "running"
    ]
    # One unfinished run per line, its id first, no header.
    if sorted(ids) != sorted(unfinished):
        return [f"`loopwright runs --unfinished` printed {out!r}; unfinished: {unfinished}"]
    if ids:
        code, _, err = await cli("resume", *ids, env=env)
        if code != 0:
            return [f"`loopwright resume {' '.join(ids)}` exited {code}: {err}"]
    return []


async def run_batch(
    plans: Sequence[TrialPlan], workers: Workers, env: Mapping[str, str], url: str, where: Path
) -> list[Outcome]:
    effects = where / f"batch{plans[0].trial}.effects"
    effects.touch()
    seen = {p.trial: Requests() for p in plans}
    async with FakeOpenAIServer(responder({p.trial: p for p in plans}, seen)) as server:
        batch_env = {
            "LOOPWRIGHT_DATABASE_URL": url,
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": "crash-test",
            "LOOPWRIGHT_CRASH_EFFECTS": str(effects),
        }
        killed = await asyncio.gather(*(kill(workers, p, batch_env, seen[p.trial]) for p in plans))
        await asyncio.sleep(0.02)  # let the server read what the workers sent before dying
        at_kill = await snapshot(url, plans)
        landings = {
            p.trial: landed(p, at_kill[p.trial].records, at_kill[p.trial].log, seen[p.trial].keys)
            for p in plans
        }
        resumed = await resume_unfinished({**env, **batch_env}, at_kill)
        after = await snapshot(url, plans)
    lines = (await asyncio.to_thread(effects.read_text)).splitlines()
    outcomes = []
    for plan, worker in zip(plans, killed, strict=True):
        snap = after[plan.trial]
        mine = [line for line in lines if plan.owns(line.partition(" ")[2])]
        spot = landings[plan.trial] if worker.killed else "not_killed"
        problems = [*resumed, *(line for line in worker.seen if line.startswith("failed"))]
        # The results a kill at execute_tools loses: its step's calls (intent recorded).
        lost = open_intents(at_kill[plan.trial].log) if spot == "mid_tool" else set()
        problems += verify(plan, snap.records, snap.log, snap.context, mine, lost)
        outcomes.append(
            Outcome(
                plan=plan,
                where=spot,
                lost=sum(1 for m in snap.log if m.content == LOST_RESULT),
                problems=problems,
                postgres=url.startswith("postgresql"),
            )
        )
    return outcomes


async def postgres_available() -> bool:
    """Whether PostgreSQL batches run (skipped locally without a server, mandatory in CI)."""
    try:
        await require_postgres()
    except pytest.skip.Exception:
        return False
    return True


def summary(outcomes: Sequence[Outcome], seconds: float) -> str:
    where = Counter(o.where for o in outcomes)
    aimed = Counter(f"{o.plan.aim or 'random'}->{o.where}" for o in outcomes)
    return (
        f"{len(outcomes)} SIGKILL trials (seed {SEED}) in {seconds:.1f} s, "
        f"{sum(o.postgres for o in outcomes)} on PostgreSQL: kills landed {dict(where)} "
        f"(aimed->landed: {dict(sorted(aimed.items()))}); "
        f"{sum(o.lost for o in outcomes)} tool results reported lost"
    )


async def test_sigkill_anywhere_then_resume_keeps_every_message_once(tmp_path: Path) -> None:
    started = time.monotonic()
    env = base_env()
    planned = batches(TRIALS)
    template = tmp_path / "template.db"
    await add_agents(f"sqlite:///{template}", [p for batch in planned for p in batch])
    postgres = await postgres_available()
    gate = asyncio.Semaphore(PARALLEL)

    async def one(workers: Workers, number: int, plans: list[TrialPlan]) -> list[Outcome]:
        async with gate:
            if postgres and number % 4 == 1:
                async with postgres_schema() as url:
                    await add_agents(url, plans)
                    return await run_batch(plans, workers, env, url, tmp_path)
            db = tmp_path / f"batch{number}.db"
            await asyncio.to_thread(shutil.copyfile, template, db)
            return await run_batch(plans, workers, env, f"sqlite:///{db}", tmp_path)

    async with Workers(env) as workers, asyncio.TaskGroup() as group:
        done = [group.create_task(one(workers, i, b)) for i, b in enumerate(planned)]
    outcomes = [o for batch in done for o in batch.result()]
    report = summary(outcomes, time.monotonic() - started)
    print(report)
    problems = [
        f"trial {o.plan.trial} (LOOPWRIGHT_CRASH_SEED={SEED}, kill {o.where}, "
        f"aimed {o.plan.aim}): {problem}"
        for o in outcomes
        for problem in o.problems
    ]
    assert not problems, "\n".join([*problems, report])
    # TODO(issue 4): kills "during summarisation" (the fifth state) once the loop has
    # its background `summarize` state: add it to plan.AIMS and verdict.STATES, and classify
    # a record left there in verdict.landed (its run is then `background`, not `running`).
    missed = set(STATES) - {o.where for o in outcomes}
    assert not missed, f"no kill landed {sorted(missed)}: {report}"
