"""Small builders for engine tests: a workflow dict plus handlers -> a Compiled workflow."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from loopwright.engine import Compiled, Engine, Registry
from loopwright.engine.testing.memory import ManualClock, MemoryRunStore, SequentialIds
from loopwright.engine.validate import validate
from loopwright.schemas import Event, Workflow, converter


def compile_workflow(
    raw: Mapping[str, Any],
    handlers: Mapping[str, Callable[..., Any]],
    guards: Mapping[str, Callable[[Any], bool]] | None = None,
    hooks: Mapping[str, Callable[[Any], None]] | None = None,
) -> Compiled:
    """Structure and validate a workflow dict against a registry of the given callables."""
    registry = Registry()
    for name, fn in handlers.items():
        registry.add_handler(name, fn)
    for name, guard in (guards or {}).items():
        registry.add_guard(name, guard)
    for name, hook in (hooks or {}).items():
        registry.add_hook(name, hook)
    return validate(converter.structure(dict(raw), Workflow), registry, source="<test>")


def make_engine(store: MemoryRunStore | None = None, **services: Any) -> Engine:
    """An engine with deterministic ids and a manual clock."""
    return Engine(
        store=store or MemoryRunStore(),
        services=services,
        clock=ManualClock(),
        ids=SequentialIds(),
    )


async def collect(run: Any) -> list[Event]:
    """Every event of a run."""
    return [event async for event in run]
