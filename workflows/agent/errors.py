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


class DiscardRefusedError(LoopwrightError, ValueError):
    """Messages asked to be discarded are not the unheard tail of the log."""

    def __init__(self, agent_id: str, message_id: str) -> None:
        super().__init__(
            f"message {message_id!r} of agent {agent_id!r} is followed by newer messages; only "
            "a turn's unheard tail can be discarded, earlier messages stay in the log"
        )
        self.agent_id = agent_id
        self.message_id = message_id
