"""Checkpoints: durability modes, resume, compare-and-advance, fencing, background states."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest

from loopwright.engine import Outcome, RunFinishedError, StaleWriteError, handler
from loopwright.engine.testing.memory import MemoryRunStore
from loopwright.schemas import RunFailed, RunFinished, RunRecord

from .helpers import collect, compile_workflow, make_engine


class RecordingStore(MemoryRunStore):
    """A memory store that remembers every write (to see when checkpoints happen)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, RunRecord]] = []

    async def create(self, record: RunRecord) -> None:
        self.writes.append(("create", record))
        await super().create(record)

    async def save(self, record: RunRecord) -> None:
        self.writes.append(("save", record))
        await super().save(record)


@handler(outcomes=["next"])
async def count(ctx: Any) -> Outcome:
    n = (ctx.data or {}).get("n", 0)
    return Outcome("next", data={"n": n + 1})


def chain(durability: str = "sync", length: int = 3) -> dict[str, Any]:
    states: dict[str, Any] = {
        f"s{i}": {"handler": "count", "next": f"s{i + 1}"} for i in range(length)
    }
    states[f"s{length}"] = {"final": True}
    return {"name": "chain", "initial": "s0", "durability": durability, "states": states}


# Three states: two checkpoints, then one terminal write (a transition into a final state
# is not checkpointed separately); `exit` writes once.
@pytest.mark.parametrize(("mode", "saves"), [("sync", 3), ("async", 3), ("exit", 1)])
async def test_durability_modes_write_when_they_promise(mode: str, saves: int) -> None:
    store = RecordingStore()
    engine = make_engine(store)
    run = engine.start(compile_workflow(chain(mode), {"count": count}))
    await collect(run)
    kinds = [kind for kind, _ in store.writes]
    assert kinds.count("save") == saves
    assert kinds.count("create") == 1
    final = await store.load(run.id)
    assert final is not None and final.status == "finished" and final.data == {"n": 3}


async def test_sync_checkpoint_is_written_before_the_next_state_starts() -> None:
    store = RecordingStore()
    seen_seq: list[int] = []

    @handler(outcomes=["next"])
    async def peek(ctx: Any) -> str:
        stored = await store.load(ctx.run_id)
        seen_seq.append(-1 if stored is None else stored.seq)
        return "next"

    engine = make_engine(store)
    await collect(engine.start(compile_workflow(chain("sync"), {"count": peek})))
    # The run record's creation overlaps the first state; every later state starts after
    # the previous one's checkpoint.
    assert seen_seq[0] in (-1, 0)
    assert seen_seq[1:] == [1, 2]


async def test_resume_continues_from_the_last_checkpoint() -> None:
    crash = {"armed": True}

    @handler(outcomes=["next"])
    async def fragile(ctx: Any) -> Outcome:
        if ctx.state == "s2" and crash["armed"]:
            raise asyncio.CancelledError  # stands for a process dying mid-state
        n = (ctx.data or {}).get("n", 0)
        return Outcome("next", data={"n": n + 1})

    store = MemoryRunStore()
    compiled = compile_workflow(chain("sync", 4), {"count": fragile})
    engine = make_engine(store)
    run = engine.start(compiled)
    with pytest.raises(asyncio.CancelledError):
        await collect(run)
    # A real crash leaves the record as it was at the last checkpoint:
    await store.save(
        attrs.evolve(run.record, status="running", stop_reason=None, epoch=run.record.epoch)
    )
    crash["armed"] = False

    engine2 = make_engine(store)
    engine2.add_workflow(compiled)
    resumed = await engine2.resume(run.id)
    events = await collect(resumed)
    assert events[-1] == RunFinished("final")
    assert resumed.record.visited == ("s0", "s1", "s2", "s3")
    assert resumed.data == {"n": 4}
    assert resumed.record.epoch == 1
    with pytest.raises(RunFinishedError):
        await engine2.resume(run.id)


async def test_advance_executes_one_state_and_is_idempotent_per_seq() -> None:
    store = MemoryRunStore()
    engine = make_engine(store)
    compiled = engine.add_workflow(compile_workflow(chain("sync"), {"count": count}))
    run = engine.start(compiled)
    await store.create(run.record)

    rec = await engine.advance(run.id, 0)
    assert (rec.seq, rec.state, rec.data) == (1, "s1", {"n": 1})
    again = await engine.advance(run.id, 0)  # re-delivered step: nothing happens
    assert again.seq == 1 and again.data == {"n": 1}
    rec = await engine.advance(run.id, 1)
    rec = await engine.advance(run.id, 2)
    assert (rec.seq, rec.state) == (3, "s3")
    rec = await engine.advance(run.id, 3)
    assert rec.status == "finished" and rec.stop_reason == "final"
    assert (await engine.advance(run.id, 3)) == rec


async def test_a_fenced_writer_cannot_overwrite_the_new_owner() -> None:
    store = MemoryRunStore()
    gate = asyncio.Event()

    @handler(outcomes=["next"])
    async def paused(ctx: Any) -> str:
        if ctx.state == "s1" and ctx.seq == 1 and not gate.is_set():
            gate.set()
            await asyncio.sleep(0.05)  # a worker that stalls while another takes over
        return "next"

    compiled = compile_workflow(chain("sync"), {"count": paused})
    engine = make_engine(store)
    engine.add_workflow(compiled)
    run = engine.start(compiled)
    task = asyncio.ensure_future(collect(run))
    await gate.wait()
    takeover = await engine.resume(run.id)  # claims: epoch 1
    events = await task
    assert events[-1] == RunFailed(
        "stale_write",
        events[-1].message,
        True,  # type: ignore[union-attr]
    )
    assert "another worker" in events[-1].message  # type: ignore[union-attr]
    with pytest.raises(StaleWriteError):
        await store.save(attrs.evolve(run.record, seq=99))
    final = await collect(takeover)
    assert final[-1] == RunFinished("final")


BACKGROUND = {
    "name": "bg",
    "initial": "reply",
    "states": {
        "reply": {"handler": "reply", "next": "summarize"},
        "summarize": {"handler": "summarize", "next": "done", "background": True},
        "done": {"final": True},
    },
}


async def test_background_states_run_after_the_terminal_event() -> None:
    order: list[str] = []
    release = asyncio.Event()

    @handler(outcomes=["next"])
    async def reply(ctx: Any) -> str:
        order.append("reply")
        return "next"

    @handler(outcomes=["next"])
    async def summarize(ctx: Any) -> str:
        await release.wait()
        order.append("summarize")
        return "next"

    store = MemoryRunStore()
    engine = make_engine(store)
    run = engine.start(compile_workflow(BACKGROUND, {"reply": reply, "summarize": summarize}))
    events = await collect(run)
    assert events[-1] == RunFinished("final")
    order.append("consumer done")
    pending = await store.load(run.id)
    assert pending is not None and pending.status == "background"
    assert [r.id for r in await store.list_runs(unfinished=True)] == [run.id]
    release.set()
    await engine.drain()
    assert order == ["reply", "consumer done", "summarize"]
    final = await store.load(run.id)
    assert final is not None and final.status == "finished"
    assert final.visited == ("reply", "summarize")


async def test_background_work_left_by_a_dead_process_is_resumable() -> None:
    @handler(outcomes=["next"])
    async def reply(ctx: Any) -> str:
        return "next"

    @handler(outcomes=["next"])
    async def summarize(ctx: Any) -> str:
        await asyncio.sleep(10)
        return "next"

    store = MemoryRunStore()
    compiled = compile_workflow(BACKGROUND, {"reply": reply, "summarize": summarize})
    engine = make_engine(store)
    run = engine.start(compiled)
    await collect(run)
    await engine.aclose(timeout=0.01)  # the process exits; the work stays pending
    pending = await store.load(run.id)
    assert pending is not None and pending.status == "background"

    @handler(outcomes=["next"])
    async def quick(ctx: Any) -> str:
        return "next"

    engine2 = make_engine(store)
    engine2.add_workflow(compile_workflow(BACKGROUND, {"reply": reply, "summarize": quick}))
    events = await collect(await engine2.resume(run.id))
    assert events[-1] == RunFinished("final")
    final = await store.load(run.id)
    assert final is not None and final.status == "finished"
