"""The system prompt: template + memory blocks + metadata, compiled once per agent version."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from attrs import frozen

from loopwright.schemas import AgentContext, Block


def render_blocks(blocks: Sequence[Block]) -> str:
    """Memory blocks as the model sees them: label, `chars/limit`, description and value."""
    parts = ["<memory_blocks>"]
    for block in blocks:
        flag = ' read_only="true"' if block.read_only else ""
        parts.append(f'<{block.label} characters="{len(block.value)}/{block.limit}"{flag}>')
        if block.description:
            parts.append(f"<description>{block.description}</description>")
        parts.append(f"<value>{block.value}</value>")
        parts.append(f"</{block.label}>")
    parts.append("</memory_blocks>")
    return "\n".join(parts)


def render_metadata(
    *, last_edit_at: float, in_context: int, total_messages: int, archival: int
) -> str:
    """Metadata the model uses to reason about what it cannot see."""
    edited = (
        dt.datetime.fromtimestamp(last_edit_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if last_edit_at
        else "never"
    )
    hidden = max(total_messages - in_context, 0)
    return (
        "<memory_metadata>\n"
        f"- Memory blocks last edited: {edited}\n"
        f"- {hidden} earlier messages are stored but not in context "
        "(search them with search_messages when available)\n"
        f"- {archival} items in archival memory\n"
        "</memory_metadata>"
    )


def compile_system_prompt(context: AgentContext, *, archival: int = 0) -> str:
    """The full system message for an agent context (I2: it reflects the current blocks)."""
    sections = [context.agent.system.strip()] if context.agent.system.strip() else []
    if context.blocks:
        sections.append(render_blocks(context.blocks))
    sections.append(
        render_metadata(
            last_edit_at=context.last_edit_at,
            in_context=len(context.messages),
            total_messages=context.total_messages,
            archival=archival,
        )
    )
    return "\n\n".join(sections)


@frozen
class CompiledContext:
    """An agent's context at one version: the system prompt and in-context messages."""

    version: int
    system: str
    context: AgentContext
