"""The workflow JSON Schema says what the converter accepts: same verdicts, same fields."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import attrs
import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopwright.engine.loader import load_workflow, packaged_workflow_path, parse_document
from loopwright.engine.testing.workflow_strategies import valid_workflows
from loopwright.schemas import (
    Branch,
    GuardDef,
    Hooks,
    Limits,
    RetryPolicy,
    StateDef,
    Workflow,
    converter,
)

SCHEMA = json.loads(
    resources.files("loopwright.schemas").joinpath("workflow.schema.json").read_text("utf-8")
)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def schema_ok(raw: Any) -> bool:
    return bool(VALIDATOR.is_valid(raw))


def converter_ok(raw: Any) -> bool:
    try:
        converter.structure(raw, Workflow)
    except Exception:
        return False
    return True


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def _properties(node: dict[str, Any]) -> set[str]:
    return set(node["properties"])


@pytest.mark.parametrize(
    ("cls", "node", "extra"),
    [
        (Workflow, lambda s: s, set()),
        (StateDef, lambda s: s["$defs"]["state"], {"next"}),
        (Branch, lambda s: s["$defs"]["branch"], set()),
        (RetryPolicy, lambda s: s["$defs"]["retry"], set()),
        (Hooks, lambda s: s["$defs"]["hooks"], set()),
        (GuardDef, lambda s: s["$defs"]["guard"], set()),
        (Limits, lambda s: s["$defs"]["limits"], set()),
    ],
)
def test_every_attrs_field_has_a_documented_schema_property(
    cls: type, node: Any, extra: set[str]
) -> None:
    fields = {"if" if f.name == "if_" else f.name for f in attrs.fields(cls)}
    schema_node = node(SCHEMA)
    assert _properties(schema_node) == fields | extra
    required = {f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING}
    assert set(schema_node.get("required", ())) == required
    assert schema_node["additionalProperties"] is False
    assert all(p.get("description") for p in schema_node["properties"].values())


MINIMAL = {"name": "a", "initial": "s", "states": {"s": {"final": True}}}
FULL = {
    "name": "a",
    "description": "everything",
    "initial": "s",
    "durability": "async",
    "data": None,
    "params": {"n": 3, "r": 0.5, "on": True, "who": "x"},
    "guards": {"g": {"counter": "steps", "at_least": "n"}, "c": {"call": "m:f", "below": None}},
    "limits": {"max_steps": "n", "max_transitions": 50, "max_wall_ms": None},
    "states": {
        "s": {
            "handler": "h",
            "next": [{"to": "t", "if": "g", "unless": None}, "t"],
            "on": {"x": "t", "y": {"to": "t"}},
            "retry": {
                "on": ["timeout"],
                "attempts": 2,
                "backoff_ms": 0,
                "max_backoff_ms": 9,
                "before_output_only": False,
            },
            "timeout_ms": 100,
            "background": False,
            "step": True,
            "checkpoint": False,
            "hooks": {"on_enter": ["k"], "on_exit": [], "before": ["k"], "after": ["k"]},
            "description": "first",
        },
        "t": {"final": True, "stop_reason": "done", "retry": None, "handler": None},
    },
}


def _with(path: tuple[Any, ...], value: Any, base: dict[str, Any] = FULL) -> dict[str, Any]:
    raw = copy.deepcopy(base)
    node: Any = raw
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw


_DELETE = object()

VALID = [
    MINIMAL,
    FULL,
    parse_document(packaged_workflow_path("low_latency_agent").read_text("utf-8")),
    _with(("states", "s", "on"), {}),
    _with(("params",), {}),
]
INVALID = [
    _with(("name",), _DELETE),
    _with(("states",), _DELETE),
    _with(("initial",), 3),
    _with(("bogus",), 1),
    _with(("states", "s", "retires"), 1),
    _with(("states", "s", "retry", "attempts"), "3"),
    _with(("states", "s", "retry", "attempts"), 2.5),
    _with(("states", "s", "step"), "yes"),
    _with(("states", "s", "background"), 1),
    _with(("states", "s", "next"), []),
    _with(("states", "s", "next"), [["t"]]),
    _with(("states", "s", "on", "x"), 5),
    _with(("states", "s", "on", "y", "when"), "g"),
    _with(("states", "s", "on", "y", "to"), _DELETE),
    _with(("states", "s", "on", "next"), "t"),
    _with(("states", "s", "hooks"), None),
    _with(("states", "s", "hooks", "before"), [1]),
    _with(("states", "s", "description"), None),
    _with(("params", "n"), [1]),
    _with(("params", "n"), None),
    _with(("guards", "g", "at_least"), True),
    _with(("guards", "g", "at_least"), 1.5),
    _with(("limits", "max_steps"), False),
    _with(("durability",), "sometimes"),
    _with(("durability",), None),
    _with(("states", "s"), "final"),
    _with(("states",), []),
]


@pytest.mark.parametrize("raw", VALID)
def test_valid_files_pass_both(raw: dict[str, Any]) -> None:
    assert schema_ok(raw)
    assert converter_ok(raw)


@pytest.mark.parametrize("raw", INVALID)
def test_invalid_files_fail_both(raw: dict[str, Any]) -> None:
    assert not schema_ok(raw)
    assert not converter_ok(raw)


def test_the_packaged_workflow_is_valid_data() -> None:
    assert load_workflow(packaged_workflow_path("low_latency_agent")).name == "low_latency_agent"


# Shapes the converter once let through (iterating a string into characters, a null cap,
# `on` as a list beside `next`): both must refuse them.
FORMERLY_LENIENT = {
    "a string where a list of strings goes": _with(("states", "s", "retry", "on"), "timeout"),
    "a table where a list of strings goes": _with(("states", "s", "hooks", "before"), {"k": 1}),
    "no max_transitions cap (null)": _with(("limits", "max_transitions"), None),
    "`on` not a table when `next` is given": _with(("states", "s", "on"), [["x", "t"]]),
}


@pytest.mark.parametrize("raw", list(FORMERLY_LENIENT.values()), ids=list(FORMERLY_LENIENT))
def test_schema_and_converter_both_refuse_formerly_lenient_shapes(raw: dict[str, Any]) -> None:
    assert not schema_ok(raw)
    assert not converter_ok(raw)


# JSON Schema counts 3.0 as an integer while a parsed file keeps it a float the converter
# refuses for an int field, so generated floats are never whole.
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(-10, 10, allow_nan=False).filter(lambda f: not f.is_integer())
    | st.sampled_from(["", "s", "t", "steps", "visits.s", "sync", "timeout", "g", "n"])
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["to", "if", "x", "final", "handler", "on"]), inner, max_size=3
        )
    ),
    max_leaves=6,
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in items:
        out.extend(_paths(child, (*path, key)))
    return out


@st.composite
def mutated_files(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[Any, ...], Any]:
    raw = copy.deepcopy(draw(valid_workflows(max_states=3)).raw)
    path = draw(st.sampled_from(_paths(raw)))
    parent: Any = raw
    for key in path[:-1]:
        parent = parent[key]
    how = draw(st.sampled_from(["replace", "delete", "add"]))
    if how == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
        return raw, path, _DELETE
    value = draw(_VALUES)
    if how == "add" and isinstance(parent[path[-1]], dict):
        path = (*path, draw(st.sampled_from(["next", "bogus", "to", "on", "final", "s"])))
        parent = parent[path[-2]]
    parent[path[-1]] = value
    return raw, path, value


@given(mutated_files())
def test_schema_and_converter_agree_on_random_files(
    case: tuple[dict[str, Any], tuple[Any, ...], Any],
) -> None:
    raw, path, value = case
    assert schema_ok(raw) == converter_ok(raw), (path, value)


@given(valid_workflows())
def test_generated_valid_workflows_pass_the_schema(gen: Any) -> None:
    assert schema_ok(gen.raw)
