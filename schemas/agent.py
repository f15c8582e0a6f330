"""Agent-domain data: agents, memory blocks, messages and tool calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from attrs import field, frozen

Role = Literal["system", "user", "assistant", "tool"]


@frozen(kw_only=True)
class ToolCall:
    """One tool call made by the model; `arguments` is the raw JSON text."""

    id: str
    """The call id the tool result must answer."""
    name: str
    """Tool name."""
    arguments: str = ""
    """Raw JSON text of the arguments, as the model produced it."""


@frozen(kw_only=True)
class Message:
    """One message of an agent's log."""

    id: str
    """Unique id; every write is idempotent by it."""
    role: Role
    """`system`, `user`, `assistant` or `tool`."""
    content: str | None = None
    """Text content (None for an assistant message that only calls tools)."""
    tool_calls: tuple[ToolCall, ...] = ()
    """Tool calls of an assistant message."""
    tool_call_id: str | None = None
    """For a tool message: the call it answers."""
    name: str | None = None
    """For a tool message: the tool name."""
    run_id: str | None = None
    """The run (turn) that produced the message."""
    step: int = 0
    """The step of the run that produced it."""
    incomplete: bool = False
    """True for partial assistant text cut by an error or cancellation."""
    created_at: float = 0.0
    """Clock time."""


@frozen(kw_only=True)
class Block:
    """A memory block compiled into the system prompt."""

    label: str
    """Unique label within the agent (`persona`, `human`, ...)."""
    value: str = ""
    """The block text."""
    limit: int = 5000
    """Character limit of `value`."""
    read_only: bool = False
    """Whether memory tools may edit it."""
    description: str = ""
    """What the block is for (shown to the model)."""


@frozen(kw_only=True)
class Agent:
    """A stateful agent: its model, prompt template, tools and workflow."""

    id: str
    """Agent id."""
    name: str
    """Unique name (the `model` an HTTP client asks for)."""
    model: str = "gpt-4o-mini"
    """The LLM model name sent upstream."""
    system: str = ""
    """System prompt template (memory blocks are appended when compiled)."""
    workflow: str = "low_latency_agent"
    """Packaged workflow name or path of a workflow file."""
    tools: tuple[str, ...] = ()
    """Modules whose public annotated functions are the agent's tools."""
    params: Mapping[str, bool | int | float | str] = field(factory=dict)
    """Per-agent workflow param overrides."""
    version: int = 0
    """Bumped on every change of blocks or context; caches key on it."""
    tenant: str = ""
    """The tenant that owns the agent (`""`: the default tenant of a server with no keys).
    Names are unique per tenant; another tenant cannot see the agent."""
    is_template: bool = False
    """A template: never run itself; the HTTP server creates one agent per session from it."""
    created_at: float = 0.0
    """Clock time."""


@frozen(kw_only=True)
class ToolSpec:
    """A tool as offered to the model: name, description and JSON Schema of its arguments."""

    name: str
    """Tool name (unique within an agent)."""
    description: str = ""
    """What the tool does, for the model."""
    parameters: Mapping[str, object] = field(factory=dict)
    """JSON Schema (an object schema) of the arguments."""
    idempotent: bool = False
    """Safe to run twice for one call id (non-idempotent tools never re-run after a crash)."""
    timeout_s: float | None = 30.0
    """Per-call time limit; exceeding it gives the model an error result."""


@frozen(kw_only=True)
class ToolOutput:
    """The result of one tool call, as the model will see it."""

    status: Literal["ok", "error"]
    """`ok`, or `error` for unknown tool, bad arguments, exception or timeout."""
    content: str
    """Text (JSON for structured results) given back to the model."""


@frozen(kw_only=True)
class AgentContext:
    """What a turn needs to build its request: the agent, its blocks and in-context messages."""

    agent: Agent
    """The agent (its `version` keys caches)."""
    blocks: tuple[Block, ...]
    """Memory blocks, in label order."""
    messages: tuple[Message, ...]
    """In-context messages (the system message is compiled, not stored)."""
    total_messages: int = 0
    """All stored messages of the agent, in context or not."""
    last_edit_at: float = 0.0
    """Clock time of the last memory edit."""
