"""The `AgentLeases` contract, run on every implementation (fixture `lease_stores` in conftest.py).

The two handles of `lease_stores` stand for two worker processes sharing one database; the
manual clock moves time, so expiry is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopwright.engine.testing.memory import ManualClock
from loopwright.workflows.agent.ports import AgentLeases

Stores = tuple[AgentLeases, AgentLeases]

# One pair of stores serves every example of a property test: each example leases its own agent.
_examples = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
_fresh = itertools.count()

TTL = 10.0


async def test_a_free_lease_is_taken_and_refused_to_another_owner(lease_stores: Stores) -> None:
    one, two = lease_stores
    assert await one.acquire_lease("agent-1", "w1", TTL)
    assert not await two.acquire_lease("agent-1", "w2", TTL)
    assert await two.acquire_lease("agent-2", "w2", TTL)  # leases are per agent
    assert await one.acquire_lease("agent-1", "w1", TTL)  # its own again: extended, not refused


async def test_an_expired_lease_is_taken_over_and_its_old_owner_fenced_off(
    lease_stores: Stores, clock: ManualClock
) -> None:
    one, two = lease_stores
    assert await one.acquire_lease("agent-1", "w1", TTL)
    clock.advance(TTL - 1)
    assert not await two.acquire_lease("agent-1", "w2", TTL)
    clock.advance(1)  # expiry is inclusive: at `expires_at` the lease is free
    assert await two.acquire_lease("agent-1", "w2", TTL)
    assert not await one.renew_lease("agent-1", "w1", TTL)
    await one.release_lease("agent-1", "w1")  # a late release changes nothing
    assert not await one.acquire_lease("agent-1", "w1", TTL)
    assert await two.renew_lease("agent-1", "w2", TTL)


async def test_renewing_keeps_the_lease_past_its_first_expiry(
    lease_stores: Stores, clock: ManualClock
) -> None:
    one, two = lease_stores
    assert await one.acquire_lease("agent-1", "w1", TTL)
    clock.advance(8)
    assert await one.renew_lease("agent-1", "w1", TTL)
    clock.advance(8)  # 16 s after the acquire, 8 s after the renewal
    assert not await two.acquire_lease("agent-1", "w2", TTL)
    clock.advance(2)
    assert await two.acquire_lease("agent-1", "w2", TTL)


async def test_an_expired_lease_nobody_took_over_is_renewed(
    lease_stores: Stores, clock: ManualClock
) -> None:
    one, two = lease_stores
    assert await one.acquire_lease("agent-1", "w1", TTL)
    clock.advance(3 * TTL)  # the holder was paused, and nobody wanted the agent meanwhile
    assert await one.renew_lease("agent-1", "w1", TTL)
    assert not await two.acquire_lease("agent-1", "w2", TTL)


async def test_release_frees_only_the_owners_lease(lease_stores: Stores) -> None:
    one, two = lease_stores
    assert await one.acquire_lease("agent-1", "w1", TTL)
    await two.release_lease("agent-1", "w2")
    await two.release_lease("agent-9", "w2")  # no lease at all: nothing to do
    assert not await two.acquire_lease("agent-1", "w2", TTL)
    await one.release_lease("agent-1", "w1")
    assert not await one.renew_lease("agent-1", "w1", TTL)
    assert await two.acquire_lease("agent-1", "w2", TTL)


async def test_of_concurrent_claims_exactly_one_wins(
    lease_stores: Stores, clock: ManualClock
) -> None:
    async def claims(round_: int) -> list[bool]:
        handles = itertools.cycle(lease_stores)
        return list(
            await asyncio.gather(
                *(next(handles).acquire_lease("agent-1", f"w{round_}-{n}", TTL) for n in range(8))
            )
        )

    assert (await claims(1)).count(True) == 1
    assert (await claims(2)).count(True) == 0  # held
    clock.advance(TTL)
    assert (await claims(3)).count(True) == 1  # expired: exactly one takes it over


Op = tuple[Literal["acquire", "renew", "release", "advance"], int, str, float]

_ops = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "renew", "release", "advance"]),
        st.sampled_from([0, 1]),  # which handle (worker) calls
        st.sampled_from(["w1", "w2", "w3"]),
        st.sampled_from([1.0, 5.0, 10.0]),  # the TTL, or the time to advance
    ),
    max_size=16,
)


@_examples
@given(ops=_ops)
async def test_leases_behave_as_one_owner_with_an_expiry(
    lease_stores: Stores, clock: ManualClock, ops: list[Op]
) -> None:
    agent = f"agent-{next(_fresh)}"
    held: tuple[str, float] | None = None  # the model: owner and expiry
    for op, handle, owner, seconds in ops:
        store, now = lease_stores[handle], clock.now()
        mine = held is not None and held[0] == owner
        if op == "advance":
            clock.advance(seconds)
        elif op == "acquire":
            free = held is None or mine or held[1] <= now
            assert await store.acquire_lease(agent, owner, seconds) == free
            held = (owner, now + seconds) if free else held
        elif op == "renew":
            assert await store.renew_lease(agent, owner, seconds) == mine
            held = (owner, now + seconds) if mine else held
        else:
            await store.release_lease(agent, owner)
            held = None if mine else held
