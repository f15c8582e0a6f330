"""Messages to OpenAI wire dicts, and the chat.completions request body of one step."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from loopwright.schemas import Message


def to_openai(message: Message) -> dict[str, Any]:
    """One stored message as the model sees it (what was sent is what is stored)."""
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "content": message.content or "",
        }
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments or "{}"},
            }
            for call in message.tool_calls
        ]
    elif message.content is None:
        out["content"] = ""
    return out


def build_request(
    *,
    model: str,
    system: str,
    context: Sequence[dict[str, Any]],
    extra: Iterable[Message],
    tools: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """The streaming request body: system + in-context messages + this turn's new messages."""
    messages: list[Any] = [{"role": "system", "content": system}]
    messages.extend(context)
    messages.extend(to_openai(m) for m in extra)
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if tools:
        body["tools"] = list(tools)
        body["parallel_tool_calls"] = bool(params.get("parallel_tool_calls", True))
    max_tokens = params.get("max_completion_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        body["max_completion_tokens"] = max_tokens
    return body
