"""The `RunStore` contract, run on every implementation (fixture `run_store` in conftest.py)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings

from loopwright.engine.errors import RunNotFoundError, StaleWriteError
from loopwright.engine.ports import RunStore
from loopwright.engine.testing import strategies as sts
from loopwright.schemas import RunRecord

# One store serves every example of a property test: each example uses ids of its own.
_examples = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
_fresh = itertools.count()


def _record(run_id: str = "run-1", **changes: Any) -> RunRecord:
    base = RunRecord(id=run_id, workflow="wf", state="start", data={"n": 0})
    return attrs.evolve(base, **changes)


async def test_create_then_load_and_missing_is_none(run_store: RunStore) -> None:
    record = _record(counters={"steps": 1}, inputs={"text": "hi"})
    await run_store.create(record)
    assert await run_store.load("run-1") == record
    assert await run_store.load("run-2") is None


async def test_create_is_idempotent_by_id(run_store: RunStore) -> None:
    await run_store.create(_record(state="first"))
    await run_store.create(_record(state="second"))
    loaded = await run_store.load("run-1")
    assert loaded is not None
    assert loaded.state == "first"
    assert len(await run_store.list_runs()) == 1


async def test_save_replaces_and_the_same_record_twice_is_fine(run_store: RunStore) -> None:
    await run_store.create(_record())
    step = _record(seq=1, state="next", data={"n": 1}, visited=("start",))
    await run_store.save(step)
    await run_store.save(step)
    assert await run_store.load("run-1") == step


async def test_save_unknown_run_raises(run_store: RunStore) -> None:
    with pytest.raises(RunNotFoundError) as info:
        await run_store.save(_record("nope"))
    assert info.value.run_id == "nope"


async def test_stale_seq_is_refused(run_store: RunStore) -> None:
    await run_store.create(_record())
    await run_store.save(_record(seq=3, state="c"))
    with pytest.raises(StaleWriteError) as info:
        await run_store.save(_record(seq=2, state="b"))
    assert (info.value.epoch, info.value.stored_epoch) == (0, 0)
    loaded = await run_store.load("run-1")
    assert loaded is not None
    assert (loaded.seq, loaded.state) == (3, "c")


async def test_claim_bumps_the_epoch_and_fences_the_old_writer(run_store: RunStore) -> None:
    await run_store.create(_record(seq=2))
    claimed = await run_store.claim("run-1")
    assert claimed == _record(seq=2, epoch=1)
    assert await run_store.load("run-1") == claimed
    # The old owner is refused even when it is ahead in seq.
    with pytest.raises(StaleWriteError) as info:
        await run_store.save(_record(seq=9, epoch=0))
    assert (info.value.epoch, info.value.stored_epoch) == (0, 1)
    await run_store.save(attrs.evolve(claimed, seq=3))
    again = await run_store.claim("run-1")
    assert (again.epoch, again.seq) == (2, 3)
    with pytest.raises(StaleWriteError):
        await run_store.save(attrs.evolve(claimed, seq=4))


async def test_a_newer_epoch_may_write_at_a_lower_seq(run_store: RunStore) -> None:
    await run_store.create(_record(seq=5))
    await run_store.save(_record(seq=1, epoch=1))
    loaded = await run_store.load("run-1")
    assert loaded is not None
    assert (loaded.epoch, loaded.seq) == (1, 1)


async def test_claim_unknown_run_raises(run_store: RunStore) -> None:
    with pytest.raises(RunNotFoundError):
        await run_store.claim("nope")


async def test_concurrent_claims_each_get_their_own_epoch(run_store: RunStore) -> None:
    await run_store.create(_record())
    claims = await asyncio.gather(*(run_store.claim("run-1") for _ in range(10)))
    assert sorted(c.epoch for c in claims) == list(range(1, 11))


async def test_list_runs_newest_first_with_filters_and_limit(run_store: RunStore) -> None:
    statuses = ["running", "finished", "background", "failed", "cancelled", "running"]
    for n, status in enumerate(statuses):
        await run_store.create(_record(f"r{n}", status=status, key="a" if n % 2 else "b"))
    assert [r.id for r in await run_store.list_runs()] == ["r5", "r4", "r3", "r2", "r1", "r0"]
    assert [r.id for r in await run_store.list_runs(unfinished=True)] == ["r5", "r2", "r0"]
    assert [r.id for r in await run_store.list_runs(key="a")] == ["r5", "r3", "r1"]
    assert [r.id for r in await run_store.list_runs(unfinished=True, key="b")] == ["r2", "r0"]
    assert [r.id for r in await run_store.list_runs(limit=2)] == ["r5", "r4"]


async def test_list_runs_sees_saved_status(run_store: RunStore) -> None:
    await run_store.create(_record())
    await run_store.save(_record(seq=1, status="finished", stop_reason="final"))
    assert await run_store.list_runs(unfinished=True) == []
    claimed = await run_store.claim("run-1")
    assert await run_store.list_runs() == [claimed]


@_examples
@given(record=sts.run_records())
async def test_every_field_round_trips(run_store: RunStore, record: RunRecord) -> None:
    record = attrs.evolve(record, id=f"{record.id}-{next(_fresh)}")
    await run_store.create(record)
    assert await run_store.load(record.id) == record
    later = attrs.evolve(record, seq=record.seq + 1, data={"after": record.data})
    await run_store.save(later)
    assert await run_store.load(record.id) == later
    assert later in await run_store.list_runs(limit=1000)
