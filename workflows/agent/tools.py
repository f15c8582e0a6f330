"""Running one step's tool calls: parse, strip the loop's field, call, answer every call id."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Sequence

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


CANCELLED = "cancelled: the user interrupted before this call finished"
"""The result of a call cut off by a barge-in (the model may call it again)."""

LOST = (
    "the result of this call was lost in a crash: the action may or may not have happened; "
    "check whether it did before calling it again"
)
"""The result of a non-idempotent call whose process died while it ran (it is not run again)."""

_LOST_OUTPUT = ToolOutput(status="error", content=LOST)


class ToolRun:
    """One step's calls, run concurrently; what finished is known even when the run is
    cancelled, so every call id still gets an answer (I1)."""

    __slots__ = ("_calls", "_outputs")

    def __init__(self, calls: Sequence[ToolCall]) -> None:
        self._calls = tuple(calls)
        self._outputs: dict[int, ToolOutput] = {}

    def mark_lost(self, ids: Collection[str]) -> None:
        """Answer these calls with the `LOST` error and never run them: an earlier attempt
        may have run them (their intent was recorded, their result was not)."""
        for i, call in enumerate(self._calls):
            if call.id in ids:
                self._outputs[i] = _LOST_OUTPUT

    async def run(self, toolbox: Toolbox) -> None:
        """Run every call not lost; cancelling this cancels the calls still running."""

        async def one(position: int, call: ToolCall) -> None:
            self._outputs[position] = await _one(toolbox, call)

        await asyncio.gather(
            *(one(i, call) for i, call in enumerate(self._calls) if i not in self._outputs)
        )

    def answers(self) -> list[tuple[ToolCall, ToolOutput, str]]:
        """(call, output, message content) per call, in call order; a call that has not
        finished gets the `CANCELLED` error."""
        cut = ToolOutput(status="error", content=CANCELLED)
        outputs = [self._outputs.get(i, cut) for i in range(len(self._calls))]
        return [(call, out, envelope(out)) for call, out in zip(self._calls, outputs, strict=True)]
