"""PythonToolbox: schemas from signatures and docstrings, and calls that never crash the loop."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
import time
import types
from typing import Annotated, Any, cast

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from loopwright.adapters.tools.python import (
    PythonToolbox,
    ToolDefinitionError,
    ToolImportError,
    tool,
)
from loopwright.schemas import ToolOutput, ToolSpec
from loopwright.workflows.agent.tool_schema import prepare_tools, strip_pre_exec

MODULE = "tests.adapters.tools.toolmodule"


class Point(BaseModel):
    x: int
    y: int = 0


def add(a: int, b: int = 2) -> int:
    """Add two numbers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


def fail(message: str) -> str:
    raise ValueError(message)


def give(kind: str) -> object:
    values: dict[str, object] = {
        "text": 'he said "hi"',
        "dict": {"n": 1, "s": "é"},
        "list": [1, 2.5, None, True],
        "none": None,
        "model": Point(x=1),
        "attrs": ToolOutput(status="ok", content="x"),
        "big": 2**70,
        "nan": float("nan"),
        "set": {1, 2},
        "object": object(),
    }
    return values[kind]


async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


def sleepy(seconds: float) -> int:
    time.sleep(seconds)
    return threading.get_ident()


def properties(spec: ToolSpec) -> dict[str, Any]:
    return cast(dict[str, Any], spec.parameters["properties"])


def toolbox(*fns: Any, max_result_chars: int = 10_000) -> PythonToolbox:
    return PythonToolbox.from_callables(fns, max_result_chars=max_result_chars)


# --- schemas -------------------------------------------------------------------------------


def test_schema_comes_from_signature_and_docstring() -> None:
    (spec,) = toolbox(add).specs()
    assert spec.name == "add"
    assert spec.description == "Add two numbers."
    assert spec.parameters == {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": "The first number."},
            "b": {"type": "integer", "description": "The second number.", "default": 2},
        },
        "required": ["a"],
        "additionalProperties": False,
    }
    jsonschema.Draft202012Validator.check_schema(spec.parameters)


def test_plain_functions_are_not_idempotent_and_tool_sets_options() -> None:
    @tool(idempotent=True, timeout=1.5, name="sum_two", description="Sums.")
    def summed(a: int, b: int) -> int:
        return a + b

    plain, marked = toolbox(add, summed).specs()
    assert (plain.idempotent, plain.timeout_s) == (False, 30.0)
    assert (marked.name, marked.description, marked.idempotent, marked.timeout_s) == (
        "sum_two",
        "Sums.",
        True,
        1.5,
    )
    assert summed(1, 2) == 3  # the decorator leaves the function callable as it was


def test_bare_tool_decorator_and_nested_models() -> None:
    @tool
    def move(to: Point, path: list[Point] | None = None) -> dict[str, int]:
        return {"x": to.x, "y": to.y, "hops": len(path or [])}

    box = toolbox(move)
    (spec,) = box.specs()
    assert spec.parameters["required"] == ["to"]
    assert set(properties(spec)) == {"to", "path"}
    validator = jsonschema.Draft202012Validator(spec.parameters)
    assert validator.is_valid({"to": {"x": 1}, "path": [{"x": 2, "y": 3}]})
    assert not validator.is_valid({"to": {"y": 1}})


async def test_from_modules_takes_public_annotated_functions_defined_there() -> None:
    box = PythonToolbox.from_modules([MODULE])
    assert [s.name for s in box.specs()] == ["greet", "async_lookup", "add_numbers"]
    greet, lookup, added = box.specs()
    assert greet.description == "Greet someone by name."
    assert properties(greet)["name"]["description"] == "Who to greet."
    assert properties(lookup)["days"]["description"] == "How many days ahead."
    assert added.idempotent
    assert added.timeout_s == 2.0
    out = await box.call("async_lookup", {"city": "Oslo", "days": 2})
    assert (out.status, json.loads(out.content)["forecast"]) == ("ok", ["sun", "sun"])
    assert (await box.call("add_numbers", {"a": 2, "b": 3})).content == "5"


def test_from_modules_follows_all_when_the_module_has_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("lw_tools_with_all")
    exec(
        "from tests.adapters.tools.toolmodule import greet\n"
        "def listed(x: int) -> int: return x\n"
        "def unlisted(x: int) -> int: return x\n"
        "__all__ = ['listed', 'greet', 'missing']\n",
        module.__dict__,
    )
    monkeypatch.setitem(sys.modules, module.__name__, module)
    names = [s.name for s in PythonToolbox.from_modules([module.__name__]).specs()]
    assert names == ["listed", "greet"]


def test_a_module_that_does_not_import_is_a_typed_error() -> None:
    with pytest.raises(ToolImportError, match="lw_no_such_module") as info:
        PythonToolbox.from_modules(["lw_no_such_module"])
    assert isinstance(info.value, ImportError)


def test_definition_errors_say_what_to_change() -> None:
    def spread(*values: int) -> int:
        return sum(values)

    def opts(**options: str) -> str:
        return ""

    with pytest.raises(ToolDefinitionError, match="list the parameters"):
        toolbox(spread)
    with pytest.raises(ToolDefinitionError, match="list the parameters"):
        toolbox(opts)
    with pytest.raises(ToolDefinitionError, match="two tools have this name"):
        toolbox(add, tool(name="add")(fail))
    with pytest.raises(ToolDefinitionError, match=re.escape("@tool(name=...)")):
        toolbox(tool(name="has space")(add))
    with pytest.raises(ToolDefinitionError, match="defined at module level"):
        toolbox(local_annotation())
    with pytest.raises(ValueError, match="max_result_chars"):
        toolbox(add, max_result_chars=10)


def local_annotation() -> Any:
    class Local:
        pass

    def uses_local(x: Local) -> str:
        return ""

    return uses_local


# --- calls ---------------------------------------------------------------------------------


async def test_valid_call_returns_json_and_text_as_is() -> None:
    box = toolbox(add, give)
    assert await box.call("add", {"a": "40"}) == ToolOutput(status="ok", content="42")
    text = await box.call("give", {"kind": "text"})
    assert (text.status, text.content) == ("ok", 'he said "hi"')
    for kind, value in [
        ("dict", {"n": 1, "s": "é"}),
        ("list", [1, 2.5, None, True]),
        ("model", {"x": 1, "y": 0}),
        ("attrs", {"status": "ok", "content": "x"}),
        ("big", 2**70),
        ("nan", None),
    ]:
        out = await box.call("give", {"kind": kind})
        assert (out.status, json.loads(out.content)) == ("ok", value)
    assert (await box.call("give", {"kind": "none"})).content == "null"


async def test_unknown_tool_lists_the_known_ones() -> None:
    out = await toolbox(add, fail).call("ad", {"a": 1})
    assert out.status == "error"
    assert "unknown tool 'ad'" in out.content
    assert "add, fail" in out.content


async def test_bad_arguments_say_which_field_and_why() -> None:
    box = toolbox(add)
    out = await box.call("add", {"a": "many", "b": 1})
    assert out.status == "error"
    assert "a: Input should be a valid integer" in out.content
    assert "'many'" in out.content
    missing = await box.call("add", {"b": 1})
    assert (missing.status, "a: Field required" in missing.content) == ("error", True)
    extra = await box.call("add", {"a": 1, "c": 3})
    assert extra.status == "error"
    assert "c: not a parameter of this tool (parameters: a, b)" in extra.content
    not_object = await box.call("add", ["a"])  # type: ignore[arg-type]
    assert (not_object.status, "must be a JSON object" in not_object.content) == ("error", True)


async def test_an_exception_is_an_error_never_a_success() -> None:
    out = await toolbox(fail).call("fail", {"message": "disk full"})
    assert (out.status, out.content) == ("error", "tool 'fail' failed: ValueError: disk full")


async def test_an_unserialisable_result_is_an_error() -> None:
    box = toolbox(give)
    for kind in ("set", "object"):
        out = await box.call("give", {"kind": kind})
        assert out.status == "error"
        assert "not JSON-serialisable" in out.content


class _BrokenModel:
    def model_dump(self, mode: str = "json") -> object:
        raise RuntimeError("broken model")


class _Text(str):
    def __len__(self) -> int:
        raise RuntimeError("no length")


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


def _cycle() -> list[object]:
    value: list[object] = []
    value.append(value)
    return value


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_BrokenModel, "RuntimeError: broken model"),
        (_cycle, "ValueError: Circular reference"),
        (lambda: _nested(100_000), "RecursionError"),
    ],
)
async def test_a_result_that_raises_while_encoded_is_an_error_not_an_exception(
    make: Any, why: str
) -> None:
    def odd() -> object:
        return make()

    out = await toolbox(odd).call("odd", {})
    assert out.status == "error"
    assert "not JSON-serialisable" in out.content and why in out.content


async def test_a_str_subclass_is_returned_as_its_plain_text() -> None:
    def text() -> str:
        return _Text("plain words")

    out = await toolbox(text).call("text", {})
    assert (out.status, out.content, type(out.content)) == ("ok", "plain words", str)


async def test_timeout_of_an_async_tool() -> None:
    box = toolbox(tool(timeout=0.05)(slow))
    started = time.perf_counter()
    out = await box.call("slow", {"seconds": 5})
    assert time.perf_counter() - started < 1
    assert out.status == "error"
    assert "timed out after 0.05 s; it may have had effects already" in out.content


async def test_timeout_of_a_sync_tool_does_not_block_the_loop() -> None:
    release = threading.Event()

    @tool(timeout=0.05, idempotent=True)
    def stuck() -> str:
        release.wait(5)
        return "late"

    try:
        out = await toolbox(stuck).call("stuck", {})
    finally:
        release.set()
    assert (out.status, out.content) == ("error", "tool 'stuck' timed out after 0.05 s")


async def test_a_timeout_raised_by_the_tool_itself_is_a_failure() -> None:
    async def upstream() -> str:
        raise TimeoutError("upstream took too long")

    out = await toolbox(upstream).call("upstream", {})
    assert out.content == "tool 'upstream' failed: TimeoutError: upstream took too long"


async def test_sync_tool_runs_off_the_event_loop() -> None:
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    out = await toolbox(sleepy).call("sleepy", {"seconds": 0.3})
    stop.set()
    await ticking
    assert out.status == "ok"
    assert int(out.content) != threading.get_ident()
    assert ticks >= 10  # the loop kept going while the tool slept


async def test_parallel_calls_run_concurrently() -> None:
    box = toolbox(slow, sleepy)
    started = time.perf_counter()
    outs = await asyncio.gather(
        *(box.call("slow", {"seconds": 0.2}) for _ in range(5)),
        *(box.call("sleepy", {"seconds": 0.2}) for _ in range(3)),
    )
    elapsed = time.perf_counter() - started
    assert [o.status for o in outs] == ["ok"] * 8
    assert elapsed < 0.6  # sequential would take 1.6 s


async def test_cancelling_a_call_is_not_swallowed() -> None:
    task = asyncio.create_task(toolbox(slow).call("slow", {"seconds": 5}))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_positional_only_parameters() -> None:
    def power(base: int, exponent: int = 2, /) -> int:
        return int(base**exponent)

    box = toolbox(power)
    assert (await box.call("power", {"base": 3})).content == "9"
    assert (await box.call("power", {"base": 2, "exponent": 5})).content == "32"


async def test_strict_mode_nulls_mean_the_default() -> None:
    def greet(
        name: str,
        greeting: str = "Hello",
        suffix: str | None = "!",
        times: Annotated[int, Field(ge=1)] = 1,
    ) -> str:
        return f"{greeting}, {name}{suffix or ''}" * times

    box = toolbox(greet)
    (entry,) = prepare_tools(box.specs(), pre_exec_msg=True, strict=True)
    model_args = {
        "pre_exec_msg": "One moment.",
        "name": "Ada",
        "greeting": None,
        "suffix": None,
        "times": None,
    }
    jsonschema.validate(model_args, entry["function"]["parameters"])
    arguments, spoken = strip_pre_exec(model_args)
    assert spoken == "One moment."
    # `greeting` and `times` reject None, so null means "use the default"; `suffix` takes None.
    assert (await box.call("greet", arguments)).content == "Hello, Ada"


@given(
    budget=st.integers(min_value=100, max_value=400),
    text=st.text(min_size=0, max_size=1000),
)
def test_results_and_errors_are_truncated_to_the_budget(budget: int, text: str) -> None:
    def echo(value: str) -> str:
        return value

    def explode(value: str) -> str:
        raise RuntimeError(value)

    box = toolbox(echo, explode, max_result_chars=budget)
    out = asyncio.run(box.call("echo", {"value": text}))
    assert len(out.content) <= budget
    if len(text) <= budget:
        assert out.content == text
    else:
        kept = out.content.index("\n[truncated: showing ")
        assert text.startswith(out.content[:kept])
        assert out.content.endswith(f" of {len(text)} characters]")
    error = asyncio.run(box.call("explode", {"value": text}))
    assert error.status == "error"
    assert len(error.content) <= budget
