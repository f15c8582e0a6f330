"""Tool specs to OpenAI `tools` entries: the loop's schema transforms, as pure dict functions.

- `request_heartbeat` is dropped: the loop decides when to continue, not the model.
- `pre_exec_msg` (optional) is added as the first, required property, so the model writes a short
  sentence for the user before the rest of the arguments and the client hears it while they stream.
- strict mode makes the schema acceptable to OpenAI's strict function calling: every property
  required, optional ones nullable, `additionalProperties: false` on every object, and the
  function's `"strict": true` actually sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from loopwright.engine.errors import LoopwrightError
from loopwright.schemas import ToolSpec

PRE_EXEC_KEY = "pre_exec_msg"
HEARTBEAT_KEY = "request_heartbeat"
PRE_EXEC_DESCRIPTION = (
    "A short sentence to say to the user right now, before the tool runs, so they are not "
    'left waiting in silence (for example: "Let me look that up."). Use the user\'s language; '
    "it is spoken aloud, so no markup."
)

_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_VALUES = ("items", "not", "contains", "if", "then", "else", "additionalItems")
_ANNOTATIONS = ("description", "title")


class ToolSchemaError(LoopwrightError, ValueError):
    """A tool's parameters cannot be offered to the model as they are."""

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(f"tool {tool!r}: {message}")
        self.tool = tool


def prepare_tools(
    specs: Iterable[ToolSpec], *, pre_exec_msg: bool, strict: bool
) -> list[dict[str, Any]]:
    """OpenAI `tools` entries for `specs`, transformed; the specs are left untouched."""
    return [prepare_tool(spec, pre_exec_msg=pre_exec_msg, strict=strict) for spec in specs]


def prepare_tool(spec: ToolSpec, *, pre_exec_msg: bool, strict: bool) -> dict[str, Any]:
    """One OpenAI `tools` entry (`{"type": "function", "function": {...}}`) for `spec`.

    Raises: ToolSchemaError when the tool's parameters are not an object schema, or when the
    tool has its own `pre_exec_msg` parameter while the loop adds one.
    """
    parameters = _parameters(spec)
    if strict:
        _make_strict(parameters)
    if pre_exec_msg:
        _add_pre_exec(spec.name, parameters)
    function: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "parameters": parameters,
    }
    if strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def strip_pre_exec(arguments: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Split the loop's `pre_exec_msg` off a call's arguments: (the tool's arguments, message).

    A missing or non-string message is None: the field is the loop's, so its absence never stops
    the tool from running.
    """
    rest = {key: value for key, value in arguments.items() if key != PRE_EXEC_KEY}
    message = arguments.get(PRE_EXEC_KEY)
    return rest, message if isinstance(message, str) else None


def _parameters(spec: ToolSpec) -> dict[str, Any]:
    """A fresh copy of the object schema of the arguments, without `request_heartbeat`."""
    parameters = _copy(spec.parameters)
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise ToolSchemaError(
            spec.name, 'parameters must be an object schema ({"type": "object", ...})'
        )
    parameters["type"] = "object"
    properties = parameters.setdefault("properties", {})
    if not isinstance(properties, dict):
        raise ToolSchemaError(spec.name, '"properties" must map names to schemas')
    properties.pop(HEARTBEAT_KEY, None)
    required = parameters.get("required")
    if isinstance(required, list) and HEARTBEAT_KEY in required:
        parameters["required"] = [name for name in required if name != HEARTBEAT_KEY]
    return parameters


def _add_pre_exec(tool: str, parameters: dict[str, Any]) -> None:
    properties: dict[str, Any] = parameters["properties"]
    if PRE_EXEC_KEY in properties:
        raise ToolSchemaError(
            tool,
            f"has a parameter named {PRE_EXEC_KEY!r}, which the agent loop reserves for the "
            "sentence spoken before a tool runs; rename the parameter",
        )
    pre_exec = {"type": "string", "description": PRE_EXEC_DESCRIPTION}
    parameters["properties"] = {PRE_EXEC_KEY: pre_exec, **properties}
    required = parameters.get("required")
    parameters["required"] = [PRE_EXEC_KEY, *(required if isinstance(required, list) else ())]


def _copy(value: object) -> object:
    """Deep copy of JSON-like data into plain dicts and lists (specs may hold read-only maps)."""
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_copy(item) for item in value]
    return value


def _make_strict(schema: object) -> None:
    """Rewrite `schema` (our own copy) in place, with every subschema, for strict mode."""
    if not isinstance(schema, dict):
        return
    for key in _SCHEMA_MAPS:
        children = schema.get(key)
        if isinstance(children, dict):
            for child in children.values():
                _make_strict(child)
    for key in _SCHEMA_LISTS:
        children = schema.get(key)
        if isinstance(children, list):
            for child in children:
                _make_strict(child)
    for key in _SCHEMA_VALUES:
        _make_strict(schema.get(key))
    if "oneOf" in schema and "anyOf" not in schema:
        # Strict mode accepts anyOf only; the branches of tool schemas do not overlap in practice.
        schema["anyOf"] = schema.pop("oneOf")
    if "$ref" in schema and len(schema) > 1:
        # Strict mode allows no siblings next to $ref, but allows them next to anyOf.
        schema["anyOf"] = [{"$ref": schema.pop("$ref")}]
    if "default" in schema:
        # Strict mode refuses `default`; the model still learns it from the description.
        _describe(schema, f"default: {json.dumps(schema.pop('default'))}")
    if _is_object(schema):
        _strict_object(schema)


def _strict_object(schema: dict[str, Any]) -> None:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        properties = schema["properties"] = {}
    required = schema.get("required")
    required_names = set(required) if isinstance(required, list) else set()
    for name in properties:
        if name not in required_names:
            properties[name] = _nullable(properties[name])
    schema["required"] = list(properties)
    # Free-form maps (`dict[str, X]`) cannot be expressed in strict mode: they become closed.
    schema["additionalProperties"] = False


def _is_object(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind is None:
        return "properties" in schema
    return kind == "object" or (isinstance(kind, list) and "object" in kind)


def _accepts_null(schema: object) -> bool:
    if schema is True or schema == {}:
        return True
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return "enum" not in schema or None in schema["enum"]
    branches = schema.get("anyOf")
    return isinstance(branches, list) and any(_accepts_null(branch) for branch in branches)


def _nullable(schema: object) -> object:
    """`schema` widened to also accept null (an omitted optional argument in strict mode)."""
    if _accepts_null(schema):
        return schema
    if not isinstance(schema, dict):
        return {"type": "null"}
    kind = schema.get("type")
    plain = not any(key in schema for key in ("enum", "const", "$ref", "anyOf", "allOf", "not"))
    if plain and isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    if plain and isinstance(kind, list):
        return {**schema, "type": [*kind, "null"]}
    if "anyOf" in schema and len(schema) == 1 + sum(key in schema for key in _ANNOTATIONS):
        return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
    # Annotations stay outside the union, where strict mode allows them next to anyOf.
    outer = {key: schema[key] for key in _ANNOTATIONS if key in schema}
    inner = {key: value for key, value in schema.items() if key not in _ANNOTATIONS}
    return {**outer, "anyOf": [inner, {"type": "null"}]}


def _describe(schema: dict[str, Any], note: str) -> None:
    description = schema.get("description")
    schema["description"] = f"{description} ({note})" if description else note
