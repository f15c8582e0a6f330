"""The agent loop's run data: one turn's input and its per-step scratch state."""

from __future__ import annotations

from typing import Any

from attrs import field, frozen
from cattrs.gen import make_dict_unstructure_fn, override

from loopwright.schemas import Message, converter


@frozen(kw_only=True)
class TurnInput:
    """What a turn starts from: the agent and the messages the caller added."""

    agent: str
    """Agent name or id."""
    messages: tuple[Message, ...] = ()
    """The turn's new messages, ids assigned by the caller (idempotent writes)."""
    client_tools: tuple[dict[str, Any], ...] = ()
    """OpenAI `tools` entries owned by the client: their calls are returned, never run here
    (an entry named like one of the agent's own tools is left out: the agent's wins)."""
    turn_key: str | None = None
    """The caller's key for this turn (the HTTP server: agent, session and new messages): a
    client retry of the same turn is recognised by it. Never read by the loop."""
    request: dict[str, Any] = field(factory=dict)
    """What the client sent beside the messages (sampling options, metadata...), kept on the
    run for hooks. Never read by the loop (not the LLM request body: that is `TurnData`'s)."""


@frozen(kw_only=True)
class TurnUsage:
    """Token usage summed over a turn's requests."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    requests: int = 0


@frozen(kw_only=True)
class TurnData:
    """Scratch state of one turn, checkpointed after each state (the request body excepted)."""

    agent_id: str = ""
    """Resolved agent id (set by rebuild_memory)."""
    step: int = 0
    """Steps persisted so far in this turn."""
    inputs: tuple[Message, ...] | None = None
    """The turn's input as stored and sent: answers to the client calls left open by the last
    turn first, then the caller's messages (None until rebuild_memory works it out)."""
    assistant: Message | None = None
    """This step's assistant message, once streamed."""
    tool_messages: tuple[Message, ...] = ()
    """This step's tool results (plus the heartbeat, when configured)."""
    spoken: str = ""
    """Text the client has received this turn (content and pre-exec speech)."""
    usage: TurnUsage = field(factory=TurnUsage)
    """Token usage so far."""
    failed: bool = False
    """The stream failed after output; persist stores what there is and the turn ends."""
    client_calls: bool = False
    """The model called a client-side tool: the turn ends so the client can run it."""
    request: dict[str, Any] | None = None
    """The request body of this step: transient, rebuilt after a crash, never checkpointed."""


converter.register_unstructure_hook(
    TurnData, make_dict_unstructure_fn(TurnData, converter, request=override(omit=True))
)
