"""Typed errors of the agent loop."""

from __future__ import annotations

from loopwright.engine.errors import LoopwrightError


class AgentNotFoundError(LoopwrightError, LookupError):
    """No agent has this name or id."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no agent named {name!r}; create it with `loopwright agent create {name}`"
        )
        self.name = name


class AgentExistsError(LoopwrightError, ValueError):
    """An agent with this name already exists."""

    def __init__(self, name: str) -> None:
        super().__init__(f"an agent named {name!r} already exists; choose another name")
        self.name = name


class VersionConflictError(LoopwrightError, RuntimeError):
    """The agent changed since it was read (optimistic concurrency)."""

    def __init__(self, agent_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"agent {agent_id!r} is at version {actual}, expected {expected}; reload and retry"
        )
        self.agent_id = agent_id
        self.expected = expected
        self.actual = actual
