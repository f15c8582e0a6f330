"""Declarative workflow files and the handlers they name; the agent loop lives here."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from loopwright.engine import Registry

__all__ = ["AGENT_LOOP", "registry", "workflow_path"]

AGENT_LOOP = "low_latency_agent"


def registry() -> Registry:
    """Names the packaged workflows use (`agent.*` handlers, the `agent.turn` data type)."""
    from .agent import handlers
    from .agent.turn import TurnData

    reg = Registry()
    for name in ("rebuild_memory", "request", "stream", "execute_tools", "persist"):
        reg.add_handler(f"agent.{name}", getattr(handlers, name))
    reg.add_data_type("agent.turn", TurnData)
    return reg


def workflow_path(name: str = AGENT_LOOP) -> Path:
    """Path of a packaged workflow file (`low_latency_agent` -> its .toml)."""
    path = resources.files(__name__).joinpath(f"{name}.toml")
    return Path(str(path))
