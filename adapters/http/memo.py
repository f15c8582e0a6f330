"""What the chat endpoint remembers between turns, to spare the store a query or two per turn.

Both memories are advisory: a miss, or any doubt, falls back to the store, so they change how
many queries a turn takes, never its answer.

- `SessionAgents`: which agent a (tenant, model, session) resolved to. The turn reads that
  agent again by id under its lease, so a deleted agent is noticed at once; a deleted
  *template* (its live sessions keep their own agents) once the entry is older than its time
  to live, since another process may have deleted it.
- `LastTurns`: per agent, the key of the last turn this process ran and the agent's version
  after it. Every write that stores a message moves the version, and a run that stored no
  message has nothing to replay, so while the version has not moved the agent's newest
  replayable run is that turn: a turn with another key cannot be its retry.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from attrs import frozen

from loopwright.schemas import Agent

__all__ = ["LastTurn", "LastTurns", "Resolved", "SessionAgents"]

K = TypeVar("K")
V = TypeVar("V")

_MAX_ENTRIES = 10_000


class _Bounded(Generic[K, V]):
    """A dict that forgets its oldest entry past `limit` (sessions end, agents come and go)."""

    __slots__ = ("_items", "_limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a memo holds at least one entry, got a limit of {limit}")
        self._items: dict[K, V] = {}
        self._limit = limit

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        items = self._items
        items.pop(key, None)  # re-inserted last: the newest entry
        items[key] = value
        if len(items) > self._limit:
            del items[next(iter(items))]

    def pop(self, key: K) -> None:
        self._items.pop(key, None)

    def keep(self, wanted: dict[K, V]) -> None:
        self._items = wanted

    def items(self) -> list[tuple[K, V]]:
        return list(self._items.items())

    def __len__(self) -> int:
        return len(self._items)


@frozen
class Resolved:
    """A session's agent as it was when the model was resolved."""

    agent: Agent
    """Read again by id under the lease before the turn uses it."""
    template: str | None
    """Id of the template the agent was made from (None: the model named the agent)."""
    at: float
    """Clock time of the resolution."""


SessionKey = tuple[str, str, str]
"""(tenant, model, session)."""


class SessionAgents:
    """(tenant, model, session) -> the agent the model resolved to, for `ttl_s` seconds."""

    def __init__(self, ttl_s: float, *, limit: int = _MAX_ENTRIES) -> None:
        if not ttl_s >= 0:
            raise ValueError(f"the resolution time to live must be >= 0 seconds, got {ttl_s}")
        self.ttl_s = ttl_s
        self._entries: _Bounded[SessionKey, Resolved] = _Bounded(limit)

    def get(self, key: SessionKey, now: float) -> Agent | None:
        """The agent resolved for `key` less than `ttl_s` ago, if any."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now - entry.at >= self.ttl_s:
            self._entries.pop(key)
            return None
        return entry.agent

    def put(self, key: SessionKey, agent: Agent, *, template: str | None, now: float) -> None:
        """Remember what `key` resolved to."""
        self._entries.put(key, Resolved(agent=agent, template=template, at=now))

    def drop(self, key: SessionKey) -> None:
        """Forget one resolution (its agent was not found)."""
        self._entries.pop(key)

    def forget(self, agent_id: str) -> None:
        """Forget every resolution to `agent_id` or made from it as a template (deleted)."""
        self._entries.keep(
            {
                k: v
                for k, v in self._entries.items()
                if v.agent.id != agent_id and v.template != agent_id
            }
        )

    def __len__(self) -> int:
        return len(self._entries)


@frozen
class LastTurn:
    """The last turn this process ran for an agent."""

    key: str
    """Its turn key."""
    version: int
    """The agent's version once that turn had stored its messages."""


class LastTurns:
    """agent id -> the last turn this process ran for it (see the module docstring)."""

    def __init__(self, *, limit: int = _MAX_ENTRIES) -> None:
        self._entries: _Bounded[str, LastTurn] = _Bounded(limit)

    def surely_new(self, agent: Agent, key: str) -> bool:
        """Whether a turn of `agent` (read under its lease) with `key` cannot be a retry of its
        newest run: the agent did not move since this process's last turn, of another key.
        False means: look at the store."""
        last = self._entries.get(agent.id)
        return last is not None and last.version == agent.version and last.key != key

    def ran(self, agent_id: str, key: str, version: int | None) -> None:
        """Record a turn that ended with the agent at `version` (None: not known, forget)."""
        if version is None:
            self._entries.pop(agent_id)
        else:
            self._entries.put(agent_id, LastTurn(key=key, version=version))

    def forget(self, agent_id: str) -> None:
        """Forget the agent's last turn (its run's outcome is not known)."""
        self._entries.pop(agent_id)

    def __len__(self) -> int:
        return len(self._entries)
