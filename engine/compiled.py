"""A validated workflow with every reference resolved: what the runner executes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from attrs import frozen

from loopwright.schemas import ParamValue, Workflow

from .registry import HandlerSpec


@frozen(kw_only=True)
class Compiled:
    """Output of `validate`: the workflow plus resolved handlers, guards and hooks."""

    workflow: Workflow
    """The structured file."""
    handlers: Mapping[str, HandlerSpec]
    """State name to its handler (final states have none)."""
    guards: Mapping[str, Callable[[Any], bool]]
    """Guard name to a `(ctx) -> bool` callable (counter guards compiled to one)."""
    hooks: Mapping[str, Callable[[Any], None]]
    """Hook reference to its callable."""
    data_type: type | None
    """The run data class, or None for a plain JSON value."""
    params: Mapping[str, ParamValue]
    """Param defaults."""
    source: str = ""
    """Where the workflow came from (a path or `<string>`)."""

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self.workflow.name
