"""One writer per agent: two turns of one agent never interleave, in this process or across the
processes sharing a store.

Two layers. An asyncio lock per agent orders the turns of this process, so its waiters cost no
database round trip. The holder of that lock then takes the agent's lease in the store
(`AgentLeases`), which excludes the other processes. A lease expires after its TTL unless
renewed; a small task renews it while the turn runs, so a worker that dies (SIGKILL, a lost
host) frees its agents within one TTL.

Policy per call: `queue` waits, up to a bound, for the running turn to end (polling the store
with backoff while another process holds the lease); `reject` fails at once with
`AgentBusyError`. A lease that could not be renewed before it expired, or that another worker
took over (this one stalled past the TTL), is *lost*: that is logged as an error, `Lease.lost`
turns true and `Lease.check()` raises `LeaseLostError` for a writer that wants to stop before
its next write.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import socket
import uuid
from typing import Literal

from loopwright.engine.errors import LoopwrightError
from loopwright.workflows.agent.ports import AgentLeases

__all__ = ["AgentBusyError", "AgentLocks", "BusyPolicy", "Lease", "LeaseLostError"]

BusyPolicy = Literal["queue", "reject"]

_log = logging.getLogger(__name__)

# Polling the store while another process holds a lease: short first (a turn often ends
# soon), doubling up to a cap that bounds how late a waiter notices a freed lease.
_FIRST_POLL_S = 0.005
_MAX_POLL_S = 0.2


class AgentBusyError(LoopwrightError, RuntimeError):
    """Another turn of this agent is running (HTTP 409; retrying later is safe)."""

    def __init__(self, agent: str, waited_s: float) -> None:
        how = "is running" if waited_s == 0 else f"still ran after {waited_s:g} s"
        super().__init__(
            f"another turn of agent {agent!r} {how}; send the turn again when it has ended, "
            "or use the `queue` busy policy to wait for it"
        )
        self.agent = agent
        self.waited_s = waited_s
        self.code = "agent_busy"


class LeaseLostError(LoopwrightError, RuntimeError):
    """The agent's lease expired before it was renewed: another worker may write the agent."""

    def __init__(self, agent: str, owner: str) -> None:
        super().__init__(
            f"the lease {owner!r} on agent {agent!r} was lost (not renewed within its TTL, or "
            "taken over by another worker); stop writing this turn, and raise the lease TTL "
            "(LOOPWRIGHT_LEASE_TTL) above the longest stall of this worker or of its database"
        )
        self.agent = agent
        self.owner = owner


class Lease:
    """Held while one turn of an agent runs; `release()` is idempotent.

    Also an async context manager that releases on exit."""

    __slots__ = ("_lock", "_locks", "_lost", "_renewal", "agent_id", "owner")

    def __init__(
        self, locks: AgentLocks, agent_id: str, lock: asyncio.Lock, owner: str | None
    ) -> None:
        self._locks: AgentLocks | None = locks
        self._lock = lock
        self._lost = False
        self._renewal: asyncio.Task[None] | None = None
        self.agent_id = agent_id
        self.owner = owner
        """The store lease's owner token (None: no store, this process only)."""

    @property
    def lost(self) -> bool:
        """Whether the store lease was lost while held (see `LeaseLostError`)."""
        return self._lost

    def check(self) -> None:
        """Raise `LeaseLostError` if the lease was lost; a fenced writer calls it before a write."""
        if self._lost:
            raise LeaseLostError(self.agent_id, self.owner or "")

    async def release(self) -> None:
        """Free the agent: the store lease first, then this process's lock."""
        locks, self._locks = self._locks, None
        if locks is not None:
            await locks._release(self)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


class AgentLocks:
    """Per-agent mutual exclusion with a waiting bound; across processes through `leases`.

    Args:
        leases: the store's leases (None: this process only).
        policy: the default busy policy.
        wait_s: the default bound of a queued wait, in seconds.
        ttl_s: how long a store lease lives unless renewed.
        renew_s: how often a held lease is renewed (default: a third of `ttl_s`).
    """

    def __init__(
        self,
        leases: AgentLeases | None = None,
        *,
        policy: BusyPolicy = "queue",
        wait_s: float = 30.0,
        ttl_s: float = 30.0,
        renew_s: float | None = None,
    ) -> None:
        if policy not in ("queue", "reject"):
            raise ValueError(f"busy policy must be `queue` or `reject`, got {policy!r}")
        _check_positive("the queue wait", wait_s)
        _check_positive("the lease TTL", ttl_s)
        renew_s = ttl_s / 3 if renew_s is None else renew_s
        if not 0 < renew_s < ttl_s:
            raise ValueError(f"the renewal interval must be within (0, {ttl_s}) s, got {renew_s}")
        self.policy: BusyPolicy = policy
        self.wait_s = wait_s
        self.ttl_s = ttl_s
        self.renew_s = renew_s
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """This process's part of every owner token (shows who holds a lease)."""
        self._leases = leases
        self._tokens = itertools.count(1)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._held: dict[str, Lease] = {}
        """Leases held in the store, by owner token."""
        self._renewals: set[asyncio.Task[None]] = set()
        """Renewal tasks not yet ended (a released lease's ends soon after its cancel)."""

    def busy(self, agent_id: str) -> bool:
        """Whether a turn of the agent holds the lock in this process now."""
        entry = self._locks.get(agent_id)
        return entry is not None and entry[0].locked()

    async def acquire(
        self, agent_id: str, *, policy: BusyPolicy | None = None, wait_s: float | None = None
    ) -> Lease:
        """Take the agent's lease: this process's lock, then the store's lease.

        `policy` and `wait_s` override the defaults for this call. Raises: AgentBusyError."""
        policy = policy or self.policy
        wait_s = self.wait_s if wait_s is None else _check_positive("the queue wait", wait_s)
        deadline = asyncio.get_running_loop().time() + wait_s
        lock = await self._lock(agent_id, policy, wait_s)
        try:
            owner = await self._take(agent_id, policy, deadline, wait_s)
        except BaseException:
            self._unlock(agent_id, lock)
            raise
        lease = Lease(self, agent_id, lock, owner)
        if owner is not None:
            self._held[owner] = lease
            task = asyncio.create_task(self._keep(lease), name=f"lease {owner}")
            self._renewals.add(task)
            task.add_done_callback(self._renewals.discard)
            lease._renewal = task
        return lease

    async def aclose(self) -> None:
        """Release every lease still held (a graceful stop frees its agents at once)."""
        for lease in list(self._held.values()):
            await lease.release()
        if self._renewals:
            await asyncio.wait(self._renewals)

    async def _lock(self, agent_id: str, policy: BusyPolicy, wait_s: float) -> asyncio.Lock:
        lock, users = self._locks.get(agent_id) or (asyncio.Lock(), 0)
        if lock.locked() and policy == "reject":
            raise AgentBusyError(agent_id, 0)
        self._locks[agent_id] = (lock, users + 1)
        try:
            async with asyncio.timeout(wait_s):
                await lock.acquire()
        except TimeoutError:
            self._unuse(agent_id, lock)
            raise AgentBusyError(agent_id, wait_s) from None
        except BaseException:
            self._unuse(agent_id, lock)
            raise
        return lock

    async def _take(
        self, agent_id: str, policy: BusyPolicy, deadline: float, wait_s: float
    ) -> str | None:
        """The owner token of the store lease once taken (None without a store)."""
        if self._leases is None:
            return None
        owner = f"{self.name}#{next(self._tokens)}"
        loop = asyncio.get_running_loop()
        poll = _FIRST_POLL_S
        try:
            while not await self._leases.acquire_lease(agent_id, owner, self.ttl_s):
                left = deadline - loop.time()
                if policy == "reject" or left <= 0:
                    raise AgentBusyError(agent_id, 0 if policy == "reject" else wait_s)
                # Jitter: waiters in several processes do not poll in step.
                await asyncio.sleep(min(left, poll * random.uniform(0.5, 1.0)))
                poll = min(poll * 2, _MAX_POLL_S)
        except AgentBusyError:
            raise
        except BaseException:
            # Cancelled (or failed) around a round trip: the lease may be ours in the store.
            await self._forget(agent_id, owner)
            raise
        return owner

    async def _keep(self, lease: Lease) -> None:
        """Renew `lease` until cancelled; mark it lost when that fails past its TTL."""
        assert self._leases is not None and lease.owner is not None
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while True:
            await asyncio.sleep(self.renew_s)
            started = loop.time()
            try:
                held = await self._leases.renew_lease(lease.agent_id, lease.owner, self.ttl_s)
            except Exception as err:  # the store is unreachable: the lease may still be ours
                held = started - renewed < self.ttl_s
                _log.warning("could not renew lease %s (%s); retrying", lease.owner, err)
            else:
                renewed = started if held else renewed
            if not held:
                lease._lost = True
                _log.error("%s", LeaseLostError(lease.agent_id, lease.owner))
                return

    async def _release(self, lease: Lease) -> None:
        try:
            if lease._renewal is not None:
                lease._renewal.cancel()
            if lease.owner is not None:
                del self._held[lease.owner]
                if not lease.lost:
                    await self._forget(lease.agent_id, lease.owner)
        finally:
            self._unlock(lease.agent_id, lease._lock)

    async def _forget(self, agent_id: str, owner: str) -> None:
        """Release a store lease; a failure is logged (the lease frees itself at its TTL)."""
        assert self._leases is not None
        try:
            await self._leases.release_lease(agent_id, owner)
        except Exception as err:
            _log.warning(
                "could not release lease %s (%s); agent %r is free again within %g s",
                owner,
                err,
                agent_id,
                self.ttl_s,
            )

    def _unlock(self, agent_id: str, lock: asyncio.Lock) -> None:
        lock.release()
        self._unuse(agent_id, lock)

    def _unuse(self, agent_id: str, lock: asyncio.Lock) -> None:
        entry = self._locks.get(agent_id)
        if entry is None or entry[0] is not lock:
            return
        if entry[1] <= 1:
            del self._locks[agent_id]
        else:
            self._locks[agent_id] = (lock, entry[1] - 1)


def _check_positive(what: str, seconds: float) -> float:
    if not seconds > 0:
        raise ValueError(f"{what} must be positive seconds, got {seconds}")
    return seconds
