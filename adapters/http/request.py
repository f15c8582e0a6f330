"""A `chat.completions` request body, parsed leniently where real clients differ.

Required: a JSON object, `model` a non-empty string, `messages` a list of objects each with a
string `role` of the accepted set. Everything else bends to what clients actually send: roles
`developer` and `function`, content as parts with extra keys, legacy `functions` and
`function_call`, `max_completion_tokens` or `max_tokens`, a `user` string or object, and any
unknown top-level field (kept in `extra` for hooks). A malformed body raises
`BadRequestError` naming the offending field (`messages[3].role`), never anything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson
from attrs import field, frozen

from loopwright.engine.errors import LoopwrightError
from loopwright.schemas import Role, ToolCall

__all__ = [
    "BadRequestError",
    "ChatRequest",
    "WireMessage",
    "error_json",
    "parse_chat_request",
]

_ROLES: Mapping[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}
_ACCEPTED = ", ".join(sorted(_ROLES))
_PLAIN_ROLES: Mapping[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
"""Roles whose message needs nothing but `content` (tool results need their call id)."""
_PLAIN_KEYS = frozenset({"role", "content"})
# Part types whose text the speaker said or wrote; images, audio and files carry none.
_TEXT_PARTS: Mapping[str, str] = {
    "text": "text",
    "input_text": "text",
    "output_text": "text",
    "refusal": "refusal",
}
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "tools",
        "functions",
        "tool_choice",
        "function_call",
        "max_tokens",
        "max_completion_tokens",
        "user",
    }
)


class BadRequestError(LoopwrightError, ValueError):
    """The request body is malformed; `param` locates the field, `message` says the fix."""

    def __init__(self, message: str, *, param: str | None = None, code: str = "invalid_value"):
        super().__init__(f"{param}: {message}" if param else message)
        self.message = message
        self.param = param
        self.code = code
        """`invalid_json`, `invalid_type`, `invalid_value` or `missing_required_parameter`."""


@frozen(kw_only=True)
class WireMessage:
    """One message of the client's transcript, roles and legacy shapes normalised."""

    role: Role
    """`developer` arrives as `system`, `function` as `tool`."""
    content: str | None = None
    """Text: the string, or the text parts joined by newlines; None when there is none."""
    tool_calls: tuple[ToolCall, ...] = ()
    """An assistant message's calls (a legacy `function_call` becomes one, with a stable id)."""
    tool_call_id: str | None = None
    """The call a tool message answers (derived for a legacy `function` message)."""
    name: str | None = None
    """The participant or tool name, when given."""


@frozen(kw_only=True)
class ChatRequest:
    """What the server needs from a `chat.completions` body; the rest stays in `extra`."""

    model: str
    """The agent (or agent template) the client addresses."""
    messages: tuple[WireMessage, ...]
    """The client's whole transcript, oldest first."""
    stream: bool = False
    """The body's `stream` (absent: False); headers such as `Accept` never decide it."""
    include_usage: bool = False
    """`stream_options.include_usage`: end the stream with a usage chunk."""
    tools: tuple[dict[str, Any], ...] = ()
    """The client's own tools in `tools` shape (legacy `functions` converted)."""
    tool_choice: Any = None
    """`tool_choice` as sent (a legacy `function_call` converted), None when absent."""
    max_tokens: int | None = None
    """`max_completion_tokens`, else `max_tokens`."""
    user: str | None = None
    """A string `user`; an object `user` (Vapi) stays in `extra`."""
    extra: Mapping[str, Any] = field(factory=dict)
    """Every other top-level field, as sent (`call`, `metadata`, `temperature`, ...)."""


def parse_chat_request(body: bytes) -> ChatRequest:
    """Parse a request body. Raises: BadRequestError, naming the field that is wrong."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise BadRequestError(
            f"the body is not valid JSON ({err}); send a JSON object encoded in UTF-8",
            code="invalid_json",
        ) from err
    if not isinstance(data, dict):
        raise BadRequestError(
            f"the body must be a JSON object, not {_kind(data)}", code="invalid_type"
        )
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _required(data, "model", "a non-empty string naming the agent")
    user = data.get("user")
    extra = {key: value for key, value in data.items() if key not in _KNOWN}
    if user is not None and not isinstance(user, str):
        extra["user"] = user
    return ChatRequest(
        model=model,
        messages=_messages(data),
        stream=_flag(data, "stream", "stream"),
        include_usage=_include_usage(data.get("stream_options")),
        tools=_tools(data),
        tool_choice=_tool_choice(data),
        max_tokens=_max_tokens(data),
        user=user if isinstance(user, str) else None,
        extra=extra,
    )


def error_json(err: BadRequestError) -> bytes:
    """The OpenAI-shaped 400 body: `{"error": {"message", "type", "param", "code"}}`."""
    error = {
        "message": err.message,
        "type": "invalid_request_error",
        "param": err.param,
        "code": err.code,
    }
    return orjson.dumps({"error": error})


def _kind(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if value == "":
        return "an empty string"
    return names.get(type(value), "a number")


def _required(data: Mapping[str, Any], key: str, what: str, where: str = "") -> BadRequestError:
    param = f"{where}.{key}" if where else key
    if key not in data:
        return BadRequestError(
            f"missing; send {what}", param=param, code="missing_required_parameter"
        )
    return BadRequestError(
        f"must be {what}, not {_kind(data[key])}", param=param, code="invalid_type"
    )


def _wrong(param: str, what: str, value: object) -> BadRequestError:
    return BadRequestError(f"must be {what}, not {_kind(value)}", param=param, code="invalid_type")


def _flag(data: Mapping[str, Any], key: str, param: str) -> bool:
    value = data.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _wrong(param, "true or false", value)
    return value


def _include_usage(options: object) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict):
        raise _wrong("stream_options", "an object", options)
    return _flag(options, "include_usage", "stream_options.include_usage")


def _max_tokens(data: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong(key, "a positive integer", value)
        if value < 1:
            raise BadRequestError(f"must be at least 1, not {value}", param=key)
        return value
    return None


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _wrong(key, "an array", value)
    return value


def _tools(data: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    tools = [_tool(raw, f"tools[{i}]") for i, raw in enumerate(_list(data, "tools"))]
    for i, raw in enumerate(_list(data, "functions")):
        _function(raw, f"functions[{i}]")
        tools.append({"type": "function", "function": raw})
    return tuple(tools)


def _tool(raw: object, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _wrong(where, "an object", raw)
    kind = raw.get("type", "function")
    if kind != "function":
        raise BadRequestError(
            f"only function tools can be offered to the model, not {_show(kind)}; "
            'send {"type": "function", "function": {...}}',
            param=f"{where}.type",
        )
    _function(raw.get("function"), f"{where}.function")
    return raw if "type" in raw else {"type": "function", **raw}


def _function(raw: object, where: str) -> None:
    if not isinstance(raw, dict):
        raise _wrong(where, "an object with a `name`", raw)
    if not isinstance(raw.get("name"), str) or not raw["name"]:
        raise _required(raw, "name", "the function's name as a non-empty string", where)


def _tool_choice(data: Mapping[str, Any]) -> Any:
    if "tool_choice" in data or data.get("function_call") is None:
        return data.get("tool_choice")
    legacy = data["function_call"]
    if legacy in ("auto", "none"):
        return legacy
    if isinstance(legacy, dict) and isinstance(legacy.get("name"), str):
        return {"type": "function", "function": {"name": legacy["name"]}}
    raise BadRequestError('must be "auto", "none" or {"name": "<function>"}', param="function_call")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _messages(data: Mapping[str, Any]) -> tuple[WireMessage, ...]:
    raw = data.get("messages")
    if not isinstance(raw, list):
        raise _required(data, "messages", "an array of message objects")
    legacy = _LegacyCalls()
    out = []
    for i, item in enumerate(raw):
        # Most messages are a role and a text: build those without the general walk.
        sent = item.get("role") if type(item) is dict else None
        role = _PLAIN_ROLES.get(sent) if type(sent) is str else None
        content = item.get("content") if role else None
        if role and item.keys() <= _PLAIN_KEYS and (content is None or type(content) is str):
            out.append(_plain(role, content))
        else:
            out.append(_message(item, f"messages[{i}]", legacy))
    return tuple(out)


_SEEN: dict[tuple[Role, str | None], WireMessage] = {}
"""Role-and-text messages already built: a client sends its whole transcript every turn, so
most of a request's messages came in the requests before (a WireMessage is immutable)."""
_SEEN_MAX = 4096
_SEEN_TEXT = 2048
"""Longer texts are built afresh, so the memo stays within a few megabytes."""


def _plain(role: Role, content: str | None) -> WireMessage:
    key = (role, content)
    message = _SEEN.get(key)
    if message is None:
        message = WireMessage(role=role, content=content)
        if content is None or len(content) <= _SEEN_TEXT:
            if len(_SEEN) >= _SEEN_MAX:
                del _SEEN[next(iter(_SEEN))]  # the oldest
            _SEEN[key] = message
    return message


def _message(raw: object, where: str, legacy: _LegacyCalls) -> WireMessage:
    if not isinstance(raw, dict):
        raise _wrong(where, "a message object", raw)
    sent = raw.get("role")
    if not isinstance(sent, str):
        raise _required(raw, "role", f"one of {_ACCEPTED}", where)
    role = _ROLES.get(sent)
    if role is None:
        raise BadRequestError(
            f"unknown role {_show(sent)}; use one of {_ACCEPTED}", param=f"{where}.role"
        )
    name = _optional_str(raw, "name", where)
    tool_call_id = _optional_str(raw, "tool_call_id", where)
    calls: tuple[ToolCall, ...] = ()
    if role == "assistant":
        calls = _tool_calls(raw, where, legacy)
    elif sent == "function" and tool_call_id is None:
        tool_call_id = legacy.answer(name)
    elif role == "tool" and tool_call_id is None:
        raise _required(raw, "tool_call_id", "the id of the call this message answers", where)
    return WireMessage(
        role=role,
        content=_content(raw.get("content"), f"{where}.content"),
        tool_calls=calls,
        tool_call_id=tool_call_id,
        name=name,
    )


def _optional_str(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise _wrong(f"{where}.{key}", "a string", value)
    return value


def _content(raw: object, where: str) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    if not isinstance(raw, list):
        raise _wrong(where, "a string, null or an array of content parts", raw)
    texts = [text for j, part in enumerate(raw) if (text := _part_text(part, f"{where}[{j}]"))]
    return "\n".join(texts) if texts else None


def _part_text(part: object, where: str) -> str | None:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        raise _wrong(where, "a content part object", part)
    kind = part.get("type", "text")
    if not isinstance(kind, str):
        raise _wrong(f"{where}.type", "a string", kind)
    key = _TEXT_PARTS.get(kind)
    if key is None:
        return None  # an image, audio or file part: no text to keep
    text = part.get(key)
    if not isinstance(text, str):
        raise _required(part, key, "a string", where)
    return text


def _tool_calls(raw: Mapping[str, Any], where: str, legacy: _LegacyCalls) -> tuple[ToolCall, ...]:
    calls = raw.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        raise _wrong(f"{where}.tool_calls", "an array", calls)
    out = [_tool_call(call, f"{where}.tool_calls[{i}]") for i, call in enumerate(calls or ())]
    function_call = raw.get("function_call")
    if function_call is not None:
        name, arguments = _function_call(function_call, f"{where}.function_call")
        out.append(ToolCall(id=legacy.call(name, arguments), name=name, arguments=arguments))
    return tuple(out)


def _tool_call(raw: object, where: str) -> ToolCall:
    if not isinstance(raw, dict):
        raise _wrong(where, "a tool call object", raw)
    call_id = raw.get("id")
    if not isinstance(call_id, str):
        raise _required(raw, "id", "the call id as a string", where)
    name, arguments = _function_call(raw.get("function"), f"{where}.function")
    return ToolCall(id=call_id, name=name, arguments=arguments)


def _function_call(raw: object, where: str) -> tuple[str, str]:
    if not isinstance(raw, dict):
        raise _wrong(where, "an object with `name` and `arguments`", raw)
    name = raw.get("name")
    if not isinstance(name, str):
        raise _required(raw, "name", "the function's name as a string", where)
    arguments = raw.get("arguments")
    if arguments is None or isinstance(arguments, str):
        return name, arguments or ""
    if not isinstance(arguments, dict | list):
        raise _wrong(f"{where}.arguments", "a JSON text (string)", arguments)
    try:  # some clients send the arguments as an object rather than its JSON text
        return name, orjson.dumps(arguments).decode()
    except orjson.JSONEncodeError as err:
        raise BadRequestError(
            f"cannot be encoded as JSON text ({err}); send it as a string",
            param=f"{where}.arguments",
        ) from err


class _LegacyCalls:
    """Stable ids for legacy `function_call`s, and the id each `function` result answers."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, str], int] = {}
        self._open: list[tuple[str, str]] = []  # unanswered calls: (name, id), oldest first

    def call(self, name: str, arguments: str) -> str:
        # The n-th identical call of a transcript gets the same id on every turn: the id
        # depends on what was called and how often before, never on list positions.
        call_id = "call_" + self._nth("call", name, arguments)
        self._open.append((name, call_id))
        return call_id

    def answer(self, name: str | None) -> str:
        """The id of the call a `function` message answers: the latest unanswered call of
        that name, else the latest unanswered call."""
        named = [k for k, (called, _) in enumerate(self._open) if called == name]
        if named or self._open:
            return self._open.pop(named[-1] if named else -1)[1]
        return "call_" + self._nth("result", name or "", "")  # its call was trimmed away

    def _nth(self, kind: str, name: str, arguments: str) -> str:
        key = (kind, name, arguments)
        n = self._seen[key] = self._seen.get(key, -1) + 1
        return _digest(kind, name, arguments, str(n))


def _digest(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()
