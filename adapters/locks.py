"""One writer per agent: two turns of the same agent never interleave in this process.

Policy per call: `queue` waits (bounded) for the running turn to end, `reject` fails at once
with `AgentBusyError`. A lease is released by its holder, once; a holder that dies (task
cancelled) releases through `finally`, so an agent is never stuck in this process.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from loopwright.engine.errors import LoopwrightError

__all__ = ["AgentBusyError", "AgentLocks", "BusyPolicy", "Lease"]

BusyPolicy = Literal["queue", "reject"]


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


class Lease:
    """Held while one turn of an agent runs; `release()` is idempotent."""

    __slots__ = ("_lock", "_locks", "agent_id")

    def __init__(self, locks: AgentLocks, agent_id: str, lock: asyncio.Lock) -> None:
        self._locks: AgentLocks | None = locks
        self._lock = lock
        self.agent_id = agent_id

    def release(self) -> None:
        locks, self._locks = self._locks, None
        if locks is not None:
            locks._release(self.agent_id, self._lock)


class AgentLocks:
    """Per-agent mutual exclusion with a waiting bound."""

    def __init__(self, *, policy: BusyPolicy = "queue", wait_s: float = 30.0) -> None:
        if policy not in ("queue", "reject"):
            raise ValueError(f"busy policy must be `queue` or `reject`, got {policy!r}")
        if wait_s <= 0:
            raise ValueError(f"the queue wait must be positive seconds, got {wait_s}")
        self.policy: BusyPolicy = policy
        self.wait_s = wait_s
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def busy(self, agent_id: str) -> bool:
        """Whether a turn of the agent holds the lock now."""
        entry = self._locks.get(agent_id)
        return entry is not None and entry[0].locked()

    async def acquire(self, agent_id: str, *, policy: BusyPolicy | None = None) -> Lease:
        """Take the agent's lease. Raises: AgentBusyError."""
        policy = policy or self.policy
        lock, users = self._locks.get(agent_id) or (asyncio.Lock(), 0)
        if lock.locked() and policy == "reject":
            raise AgentBusyError(agent_id, 0)
        self._locks[agent_id] = (lock, users + 1)
        try:
            async with asyncio.timeout(self.wait_s):
                await lock.acquire()
        except TimeoutError:
            self._unuse(agent_id, lock)
            raise AgentBusyError(agent_id, self.wait_s) from None
        except BaseException:
            self._unuse(agent_id, lock)
            raise
        return Lease(self, agent_id, lock)

    def _release(self, agent_id: str, lock: asyncio.Lock) -> None:
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
