"""Events a run streams to its consumer; exactly one terminal event ends every run."""

from __future__ import annotations

from typing import Any

from attrs import frozen


@frozen
class RunStarted:
    """The run began (or resumed)."""

    run_id: str
    workflow: str
    resumed: bool = False


@frozen
class StateEntered:
    """The runner is about to execute `state` (attempt counts from 1)."""

    state: str
    seq: int
    attempt: int = 1


@frozen
class TextDelta:
    """A piece of assistant text, as it arrived."""

    text: str


@frozen
class ToolCallStarted:
    """A tool call is about to run."""

    id: str
    name: str
    arguments: str = ""


@frozen
class ToolResult:
    """A tool call finished; `status` is `ok` or `error`."""

    id: str
    name: str
    status: str
    content: str


@frozen
class Usage:
    """Token usage of one LLM request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@frozen
class ClientToolCall:
    """A tool call the *client* runs (a voice platform's "end call"): streamed back to it as
    an OpenAI tool call, never run here. The agent's own calls are `ToolCallStarted`."""

    index: int
    """The call's position among this turn's client calls (0-based, consecutive)."""
    id: str
    """The tool call id the client's `tool` message will answer."""
    name: str
    """The client's function name."""
    arguments: str = ""
    """The JSON arguments text, whole."""


@frozen
class Retrying:
    """The current state failed with a retryable error and runs again after `delay_ms`."""

    state: str
    attempt: int
    code: str
    delay_ms: int


@frozen
class Custom:
    """An event a user handler emits that the engine passes through unchanged."""

    name: str
    payload: Any = None


@frozen
class RunFailed:
    """Terminal: the run failed."""

    code: str
    message: str
    retryable: bool = False


@frozen
class RunFinished:
    """Terminal: the run ended; `stop_reason` is `final` when a final state was reached."""

    stop_reason: str


Event = (
    RunStarted
    | StateEntered
    | TextDelta
    | ToolCallStarted
    | ToolResult
    | ClientToolCall
    | Usage
    | Retrying
    | Custom
    | RunFailed
    | RunFinished
)
TERMINAL_EVENTS = (RunFailed, RunFinished)
