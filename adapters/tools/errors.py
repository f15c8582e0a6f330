"""Typed errors of the tool adapters; each says how to fix the problem."""

from __future__ import annotations

from loopwright.engine.errors import LoopwrightError


class ToolDefinitionError(LoopwrightError, TypeError):
    """A callable cannot be offered as a tool (its name or signature)."""

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(f"tool {tool!r}: {message}")
        self.tool = tool


class ToolImportError(LoopwrightError, ImportError):
    """A tool module does not import."""

    def __init__(self, module: str, error: BaseException) -> None:
        super().__init__(
            f"tool module {module!r} does not import ({type(error).__name__}: {error}); "
            "check the agent's `tools` list and that the module is installed"
        )
        self.module = module
