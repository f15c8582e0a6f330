"""Tool schema transforms: properties over generated object schemas, plus the fixed cases."""

from __future__ import annotations

import copy
import string
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopwright.schemas import ToolSpec
from loopwright.workflows.agent.tool_schema import (
    HEARTBEAT_KEY,
    PRE_EXEC_KEY,
    ToolSchemaError,
    prepare_tool,
    prepare_tools,
    strip_pre_exec,
)

Schema = dict[str, Any]

_names = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=6)
_leaves = st.one_of(
    st.sampled_from(
        [
            {"type": "string"},
            {"type": "integer", "description": "a count"},
            {"type": "number", "default": 1.5},
            {"type": "boolean"},
            {"type": "null"},
            {"type": "string", "enum": ["a", "b"]},
            {"const": 3},
            {"$ref": "#/$defs/Thing"},
            {"$ref": "#/$defs/Thing", "description": "a thing"},
            {"type": ["string", "integer"]},
            {},
        ]
    ),
)


def _objects(children: st.SearchStrategy[Any], names: st.SearchStrategy[str]) -> Any:
    @st.composite
    def build(draw: st.DrawFn) -> Schema:
        properties: Schema = draw(st.dictionaries(names, children, max_size=5))
        required: list[str] = []
        if properties:
            required = draw(st.lists(st.sampled_from(sorted(properties)), unique=True))
        schema: Schema = {"type": "object", "properties": properties}
        listed: bool = draw(st.booleans())
        if required or listed:
            schema["required"] = required
        if draw(st.booleans()):
            schema["additionalProperties"] = draw(st.sampled_from([True, {"type": "string"}]))
        return schema

    return build()


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        _objects(children, _names),
        st.builds(lambda items: {"type": "array", "items": items}, children),
        st.builds(lambda options: {"anyOf": options}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda options: {"oneOf": options}, st.lists(children, min_size=1, max_size=3)),
    )


_schemas = st.recursive(_leaves, _extend, max_leaves=10)
_root_names = st.one_of(_names, st.just(HEARTBEAT_KEY))


@st.composite
def tool_parameters(draw: st.DrawFn) -> Schema:
    """An object schema as a tool's parameters: `$defs`, nested objects, maybe a heartbeat."""
    root: Schema = draw(_objects(_schemas, _root_names))
    root["$defs"] = {"Thing": draw(_objects(_schemas, _names))}
    return root


def _accepts_null(schema: object, defs: Schema) -> bool:
    if not isinstance(schema, dict):
        return bool(schema)
    return bool(jsonschema.Draft202012Validator({**schema, "$defs": defs}).is_valid(None))


def _check_strict(original: object, out: object, defs: Schema) -> None:
    """Strict invariants, walking the original and the output side by side."""
    if not isinstance(original, dict) or not isinstance(out, dict):
        return
    assert "default" not in out
    assert "oneOf" not in out
    if original.get("type") == "object":
        properties = out["properties"]
        assert out["additionalProperties"] is False
        assert out["required"] == list(properties)
        required = set(original.get("required", []))
        for name, child in original["properties"].items():
            if name not in required:
                assert _accepts_null(properties[name], defs), (name, properties[name])
            else:
                # Strict mode turns oneOf into anyOf (documented), which may accept more.
                expected = _accepts_null(_one_of_as_any_of(child), defs)
                assert _accepts_null(properties[name], defs) == expected
            _check_strict(child, _unwrap(child, properties[name]), defs)
    if "items" in original:
        _check_strict(original["items"], out["items"], defs)
    for key in ("anyOf", "oneOf"):
        for before, after in zip(original.get(key, []), out.get("anyOf", []), strict=False):
            _check_strict(before, after, defs)
    for name, child in original.get("$defs", {}).items():
        _check_strict(child, out["$defs"][name], defs)


def _one_of_as_any_of(schema: object) -> object:
    if isinstance(schema, list):
        return [_one_of_as_any_of(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {("anyOf" if k == "oneOf" else k): _one_of_as_any_of(v) for k, v in schema.items()}


def _unwrap(original: Schema, out: Schema) -> Schema:
    """The output node matching `original` when `_nullable` wrapped it in an anyOf."""
    if "anyOf" in out and "anyOf" not in original and "oneOf" not in original:
        inner: Schema = out["anyOf"][0]
        return inner
    return out


def _spec(parameters: Schema) -> ToolSpec:
    return ToolSpec(name="tool", description="Does things.", parameters=parameters)


@given(parameters=tool_parameters(), pre_exec=st.booleans(), strict=st.booleans())
def test_transform_properties(parameters: Schema, pre_exec: bool, strict: bool) -> None:
    before = copy.deepcopy(parameters)
    (entry,) = prepare_tools([_spec(parameters)], pre_exec_msg=pre_exec, strict=strict)
    assert parameters == before  # input not mutated

    function = entry["function"]
    assert entry["type"] == "function"
    assert (function["name"], function["description"]) == ("tool", "Does things.")
    assert function.get("strict", False) is strict
    out = function["parameters"]
    jsonschema.Draft202012Validator.check_schema(out)
    properties = out["properties"]
    assert HEARTBEAT_KEY not in properties
    assert HEARTBEAT_KEY not in out.get("required", [])
    if pre_exec:
        assert next(iter(properties)) == PRE_EXEC_KEY
        assert out["required"][0] == PRE_EXEC_KEY
        assert properties[PRE_EXEC_KEY]["type"] == "string"
        assert "before the tool runs" in properties[PRE_EXEC_KEY]["description"]
    else:
        assert PRE_EXEC_KEY not in properties
    if strict:
        tool_only = {k: v for k, v in out.items() if k != "properties"}
        tool_only["properties"] = {k: v for k, v in properties.items() if k != PRE_EXEC_KEY}
        tool_only["required"] = [k for k in out["required"] if k != PRE_EXEC_KEY]
        _check_strict(_without_heartbeat(before), tool_only, out["$defs"])
    else:
        expected = _without_heartbeat(before)
        assert {k: v for k, v in properties.items() if k != PRE_EXEC_KEY} == expected["properties"]
        assert {k: v for k, v in out.items() if k not in ("properties", "required")} == {
            k: v for k, v in expected.items() if k not in ("properties", "required")
        }


def _without_heartbeat(schema: Schema) -> Schema:
    result = copy.deepcopy(schema)
    result["properties"].pop(HEARTBEAT_KEY, None)
    if "required" in result:
        result["required"] = [k for k in result["required"] if k != HEARTBEAT_KEY]
    return result


def test_strict_transform_of_a_typical_schema() -> None:
    parameters = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to find."},
            "limit": {"type": "integer", "default": 5},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "where": {"$ref": "#/$defs/Place", "description": "Around here."},
            "request_heartbeat": {"type": "boolean"},
        },
        "required": ["query", "request_heartbeat"],
        "$defs": {
            "Place": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "tags": {"type": "array"}},
                "required": ["city"],
            }
        },
    }
    entry = prepare_tool(_spec(parameters), pre_exec_msg=True, strict=True)
    assert entry["function"]["strict"] is True
    out = entry["function"]["parameters"]
    assert list(out["properties"]) == ["pre_exec_msg", "query", "limit", "kind", "where"]
    assert out["required"] == ["pre_exec_msg", "query", "limit", "kind", "where"]
    assert out["additionalProperties"] is False
    assert out["properties"]["limit"] == {"type": ["integer", "null"], "description": "default: 5"}
    assert out["properties"]["kind"] == {
        "anyOf": [{"type": "string", "enum": ["a", "b"]}, {"type": "null"}]
    }
    assert out["properties"]["where"] == {
        "description": "Around here.",
        "anyOf": [{"$ref": "#/$defs/Place"}, {"type": "null"}],
    }
    place = out["$defs"]["Place"]
    assert place["required"] == ["city", "tags"]
    assert place["properties"]["tags"] == {"type": ["array", "null"]}
    assert place["additionalProperties"] is False
    valid = {"pre_exec_msg": "On it.", "query": "x", "limit": None, "kind": None, "where": None}
    jsonschema.validate(valid, out)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**valid, "extra": 1}, out)


def test_empty_parameters_become_an_empty_object() -> None:
    entry = prepare_tool(_spec({}), pre_exec_msg=False, strict=True)
    assert entry["function"]["parameters"] == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }


def test_parameters_that_are_not_an_object_schema_are_refused() -> None:
    with pytest.raises(ToolSchemaError, match="object schema"):
        prepare_tool(_spec({"type": "string"}), pre_exec_msg=False, strict=False)


def test_a_tool_parameter_named_pre_exec_msg_is_refused_when_the_loop_adds_one() -> None:
    spec = _spec({"type": "object", "properties": {PRE_EXEC_KEY: {"type": "string"}}})
    with pytest.raises(ToolSchemaError, match="rename the parameter"):
        prepare_tool(spec, pre_exec_msg=True, strict=False)
    assert prepare_tool(spec, pre_exec_msg=False, strict=False)["function"]["parameters"] == {
        "type": "object",
        "properties": {PRE_EXEC_KEY: {"type": "string"}},
    }


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"pre_exec_msg": "One moment.", "x": 1}, ({"x": 1}, "One moment.")),
        ({"x": 1}, ({"x": 1}, None)),  # missing: the tool still runs
        ({"pre_exec_msg": None, "x": 1}, ({"x": 1}, None)),
        ({"pre_exec_msg": 3}, ({}, None)),
    ],
)
def test_strip_pre_exec(arguments: dict[str, Any], expected: tuple[Any, Any]) -> None:
    before = dict(arguments)
    assert strip_pre_exec(arguments) == expected
    assert arguments == before
