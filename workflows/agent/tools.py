"""Running one step's tool calls: parse, strip the loop's field, call, answer every call id."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from loopwright.schemas import ToolCall, ToolOutput

from .ports import Toolbox
from .tool_schema import strip_pre_exec


def envelope(output: ToolOutput) -> str:
    """The tool message content the model sees (and the store keeps, byte for byte)."""
    if output.status == "ok":
        return output.content
    return json.dumps({"status": "error", "error": output.content}, ensure_ascii=False)


async def _one(toolbox: Toolbox, call: ToolCall) -> ToolOutput:
    try:
        arguments = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError as err:
        return ToolOutput(
            status="error",
            content=f"the arguments of {call.name} are not valid JSON ({err}); "
            "call it again with a JSON object",
        )
    if not isinstance(arguments, dict):
        return ToolOutput(
            status="error",
            content=f"the arguments of {call.name} must be a JSON object, got "
            f"{type(arguments).__name__}; call it again with an object",
        )
    arguments, _ = strip_pre_exec(arguments)
    try:
        return await toolbox.call(call.name, arguments)
    except Exception as err:  # the port promises not to raise; a broken toolbox must not crash
        return ToolOutput(status="error", content=f"{type(err).__name__}: {err}")


async def run_calls(
    toolbox: Toolbox, calls: Sequence[ToolCall], params: Mapping[str, Any]
) -> list[tuple[ToolCall, ToolOutput, str]]:
    """Run every call concurrently; one (call, output, message content) per call, in order."""
    outputs = await asyncio.gather(*(_one(toolbox, call) for call in calls))
    return [(call, out, envelope(out)) for call, out in zip(calls, outputs, strict=True)]
