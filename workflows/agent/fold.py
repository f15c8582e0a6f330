"""Fold `chat.completion.chunk` dicts into text and tool calls, as they arrive.

Pure and allocation-light: chunks are read, never copied or validated. Tool calls are kept
**by index**, with the provider quirks of `shared/corpus/openai-streams` handled:
no `index` (Ollama, Mistral: told apart by `id`, or by position in one delta), a whole call
in one chunk, the id and name repeated on every fragment (Kimi), `"id": null` and
`"name": null` on continuations (Together), an index reused with a different id (a new call:
parallel calls never merge), no `arguments` key, usage on any chunk, `choices: []` chunks
without usage (Azure), n>1 choices (choice 0 is folded), reasoning deltas (kept apart from
the text), refusals, repeated finish chunks (the first one counts) and clean EOF with no
finish at all. Whether the model called tools is decided from the content, never from
`finish_reason` alone (OpenAI sends `stop` for a forced call, Ollama always does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from attrs import frozen

from loopwright.engine.llm_errors import llm_error, llm_error_for
from loopwright.schemas import ToolCall


@frozen(kw_only=True)
class FoldResult:
    """What one streamed response said."""

    text: str
    """Visible assistant text (choice 0 `content`)."""
    tool_calls: tuple[ToolCall, ...]
    """Tool calls in the order they started, arguments as raw JSON text."""
    usage: Mapping[str, Any] | None
    """The last non-null `usage` object seen, as sent."""
    finish_reason: str | None
    """The first finish reason of choice 0; None when the stream ended without one."""
    response_id: str | None
    """The first non-empty chunk `id`."""
    model: str | None
    """The first non-empty chunk `model`."""
    refusal: str | None
    """Refusal text (structured-output refusals), None when there was none."""
    reasoning: str
    """Reasoning deltas (`reasoning_content` / `reasoning`), never shown as the reply."""

    @property
    def outcome(self) -> Literal["tool_calls", "reply"]:
        """`tool_calls` when the model called any tool, whatever the finish reason."""
        return "tool_calls" if self.tool_calls else "reply"


class _Call:
    __slots__ = ("args", "id", "name")

    def __init__(self, id: str, name: str) -> None:
        self.id = id
        self.name = name
        self.args: list[str] = []


_NONE: tuple[()] = ()


class StreamFold:
    """Fold chunks with `add`; read `result()` at the end.

    After each `add`, `fragments` lists the `(call position, argument fragment)` pairs that
    chunk brought and `started` the positions of calls it opened (positions count calls from
    0 in the order they started); both are valid until the next `add`.
    """

    __slots__ = (
        "_by_index",
        "_calls",
        "_reasoning",
        "_refusal",
        "_text",
        "finish_reason",
        "fragments",
        "model",
        "response_id",
        "started",
        "usage",
    )

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._refusal: list[str] = []
        self._calls: list[_Call] = []
        self._by_index: dict[Any, int] = {}
        self.fragments: Sequence[tuple[int, str]] = _NONE
        self.started: Sequence[int] = _NONE
        self.usage: Mapping[str, Any] | None = None
        self.finish_reason: str | None = None
        self.response_id: str | None = None
        self.model: str | None = None

    def add(self, chunk: Mapping[str, Any]) -> str:
        """Fold one chunk; return the visible text it added ('' if none): content, and refusal
        text, which the user must hear as it is stored.

        Raises: LLMError if the chunk carries an `error` object (the adapter raises first;
        this guards LLM implementations that pass such chunks on), or `stream_error` for a
        chunk of the wrong shape (valid JSON, not a chunk), so the loop keeps what was heard.
        """
        try:
            return self._add(chunk)
        except (AttributeError, TypeError, KeyError, IndexError) as err:
            raise llm_error(
                "stream_error",
                f"the provider sent a chunk of an unexpected shape ({type(err).__name__}: {err})",
                retryable=True,
            ) from None

    def _add(self, chunk: Mapping[str, Any]) -> str:
        if self.fragments:
            self.fragments = _NONE
        if self.started:
            self.started = _NONE
        error = chunk.get("error")
        if error:
            raise llm_error_for(None, error)
        usage = chunk.get("usage")
        if usage:
            if not isinstance(usage, Mapping):
                raise TypeError(f"usage is {type(usage).__name__}, not an object")
            self.usage = usage
        if self.response_id is None:
            self._identify(chunk)
        choices = chunk.get("choices")
        if not choices:
            return ""
        choice = choices[0]
        if choice.get("index", 0) != 0:
            choice = next((c for c in choices if c.get("index", 0) == 0), None)
            if choice is None:
                return ""
        reason = choice.get("finish_reason")
        if reason and self.finish_reason is None:
            self.finish_reason = reason
        delta = choice.get("delta")
        if not delta:
            return ""
        calls = delta.get("tool_calls")
        if calls:
            self._fold_calls(calls)
        refused = ""
        if "refusal" in delta or "reasoning_content" in delta or "reasoning" in delta:
            refused = self._side_channels(delta)
        text = delta.get("content")
        if text and text.__class__ is str:
            self._text.append(text)
            return text + refused
        return refused

    def _identify(self, chunk: Mapping[str, Any]) -> None:
        chunk_id = chunk.get("id")
        if chunk_id:
            self.response_id = chunk_id
            self.model = chunk.get("model") or None

    def _side_channels(self, delta: Mapping[str, Any]) -> str:
        """Fold reasoning and refusal; return the refusal text (the user hears a refusal)."""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            self._reasoning.append(reasoning)
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):  # Snowflake sends "" on every chunk
            self._refusal.append(refusal)
            return refusal
        return ""

    def _fold_calls(self, entries: Sequence[Mapping[str, Any]]) -> None:
        fragments: list[tuple[int, str]] = []
        for entry in entries:
            position = self._position(entry)
            call = self._calls[position]
            function = entry.get("function")
            if not function:
                continue
            if not call.name:
                call.name = function.get("name") or ""
            args = function.get("arguments")
            if args:
                if args.__class__ is not str:  # a provider that sends an object
                    args = json.dumps(args)
                call.args.append(args)
                fragments.append((position, args))
        if fragments:
            self.fragments = fragments

    def _position(self, entry: Mapping[str, Any]) -> int:
        index = entry.get("index")
        call_id = entry.get("id")
        if index is not None:
            position = self._by_index.get(index)
            if position is not None:
                existing = self._calls[position]
                if not call_id or not existing.id or call_id == existing.id:
                    existing.id = existing.id or call_id or ""
                    return position
            return self._open(index, call_id)
        # No index: a new id opens a call; no id continues the last call (or opens one).
        if call_id:
            for position in range(len(self._calls) - 1, -1, -1):
                if self._calls[position].id == call_id:
                    return position
            return self._open(("id", call_id), call_id)
        if self._calls:
            return len(self._calls) - 1
        return self._open(("pos", 0), None)

    def _open(self, key: Any, call_id: str | None) -> int:
        position = len(self._calls)
        self._calls.append(_Call(call_id or "", ""))
        self._by_index[key] = position
        self.started = [*self.started, position]
        return position

    def name_of(self, position: int) -> str:
        """The tool name of a call so far."""
        return self._calls[position].name

    def id_of(self, position: int) -> str:
        """The id of a call so far ('' until the provider sends it)."""
        return self._calls[position].id

    def arguments_of(self, position: int) -> str:
        """The argument text of a call so far."""
        return "".join(self._calls[position].args)

    @property
    def text(self) -> str:
        """The visible text so far."""
        return "".join(self._text)

    def result(self) -> FoldResult:
        """The folded response (calls without an id get a stable generated one)."""
        prefix = self.response_id or "scripted"
        calls = tuple(
            ToolCall(
                id=call.id or f"call_{prefix}_{position}",
                name=call.name,
                arguments="".join(call.args),
            )
            for position, call in enumerate(self._calls)
        )
        return FoldResult(
            text="".join(self._text),
            tool_calls=calls,
            usage=self.usage,
            finish_reason=self.finish_reason,
            response_id=self.response_id,
            model=self.model,
            refusal="".join(self._refusal) or None,
            reasoning="".join(self._reasoning),
        )
