"""Loading workflow files: three formats, duplicate keys, located parse and shape errors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from loopwright.engine import WorkflowError
from loopwright.engine.loader import (
    format_of,
    load_workflow,
    packaged_workflow_path,
    packaged_workflows,
    parse_document,
    parse_workflow,
    structure_workflow,
)
from loopwright.engine.testing.workflow_strategies import (
    GeneratedWorkflow,
    to_toml,
    valid_workflows,
)
from loopwright.schemas import Branch, RetryPolicy

TOML = """
name = "agent"
initial = "stream"

[params]
max_steps = 10

[guards.step_limit_reached]
counter = "steps"
at_least = "max_steps"

[states.stream]
handler = "agent.stream"
retry = { on = ["timeout"], attempts = 3 }
on = { tool_calls = "execute_tools", reply = "done" }

[states.execute_tools]
handler = "agent.execute_tools"
on.continue = [{ to = "stream", unless = "step_limit_reached" }, "done"]

[states.done]
final = true
"""

YAML = """
name: agent
initial: stream
params: {max_steps: 10}
guards:
  step_limit_reached: {counter: steps, at_least: max_steps}
states:
  stream:
    handler: agent.stream
    retry: {on: [timeout], attempts: 3}
    on: {tool_calls: execute_tools, reply: done}
  execute_tools:
    handler: agent.execute_tools
    on:
      continue:
        - {to: stream, unless: step_limit_reached}
        - done
  done: {final: true}
"""


def _problems(excinfo: pytest.ExceptionInfo[WorkflowError]) -> list[str]:
    return [str(p) for p in excinfo.value.problems]


def test_toml_yaml_and_json_give_the_same_workflow() -> None:
    from_toml = parse_workflow(TOML)
    from_yaml = parse_workflow(YAML, "yaml")
    from_json = parse_workflow(json.dumps(parse_document(TOML)), "json")
    assert from_toml == from_yaml == from_json
    assert from_toml.states["stream"].retry == RetryPolicy(on=("timeout",), attempts=3)
    assert from_toml.states["execute_tools"].on["continue"] == (
        Branch(to="stream", unless="step_limit_reached"),
        Branch(to="done"),
    )


@given(valid_workflows(), st.sampled_from(["toml", "json", "yaml"]))
def test_generated_workflows_round_trip_through_every_format(
    gen: GeneratedWorkflow, fmt: Any
) -> None:
    text = {
        "toml": to_toml,
        "json": json.dumps,
        # PyYAML writes U+0085 and U+2028 raw with allow_unicode, and they read back as breaks
        "yaml": yaml.safe_dump,
    }[fmt](gen.raw)
    assert parse_workflow(text, fmt) == structure_workflow(gen.raw)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.toml", "toml"), ("a.yaml", "yaml"), ("a.YML", "yaml"), ("a.json", "json"), ("a", "toml")],
)
def test_the_suffix_picks_the_format(name: str, fmt: str) -> None:
    assert format_of(name) == fmt


# -- duplicate keys --------------------------------------------------------------------------


def test_json_duplicate_keys_are_all_reported_with_their_path() -> None:
    text = (
        '{"name": "a", "name": "b", "initial": "s", "states": {"s": {"final": true, "final": 1}}}'
    )
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text, "json", "wf.json")
    assert sorted(_problems(caught)) == [
        "name: duplicate key; keep one",
        "states.s.final: duplicate key; keep one",
    ]
    assert caught.value.source == "wf.json"


def test_yaml_duplicate_keys_are_reported_with_path_and_line() -> None:
    text = "name: a\ninitial: s\nstates:\n  s:\n    final: true\n    final: true\n"
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text, "yaml")
    assert _problems(caught) == ["states.s.final: duplicate key (line 6); keep one"]


def test_yaml_merge_keys_may_be_overridden() -> None:
    text = textwrap.dedent("""
        retry: &retry {attempts: 2, backoff_ms: 10}
    """)
    data = parse_document(text + "other: {<<: *retry, attempts: 5}\n", "yaml")
    assert data["other"] == {"attempts": 5, "backoff_ms": 10}


@pytest.mark.parametrize(
    "text",
    [
        'name = "a"\nname = "b"\n',
        "[states.a]\nfinal = true\n[states.a]\nfinal = true\n",
        "limits = { max_steps = 1, max_steps = 2 }\n",
    ],
)
def test_toml_duplicate_keys_are_reported_with_their_position(text: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text)
    (problem,) = caught.value.problems
    assert "defined twice" in problem.message
    assert problem.location.startswith(("line ", "end of document"))


# -- syntax and encoding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fmt", "location"),
    [
        ('name = "a"\ninitial = \n', "toml", "line 2, column 11"),
        ('{"name": "a",\n "initial": }', "json", "line 2, column 13"),
        ("name: a\nstates: [1,\n  b: }\n", "yaml", "line 3, column 6"),
    ],
)
def test_syntax_errors_are_located(text: str, fmt: Any, location: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text, fmt)
    (problem,) = caught.value.problems
    assert problem.location == location


@pytest.mark.parametrize(
    ("text", "fmt"),
    [("[" * 100_000, "json"), ("a = " + "[" * 100_000, "toml"), ("[" * 5_000, "yaml")],
)
def test_absurd_nesting_is_a_problem_not_a_crash(text: str, fmt: Any) -> None:
    with pytest.raises(WorkflowError):
        parse_workflow(text, fmt)


@pytest.mark.parametrize(
    ("text", "fmt"), [("[1, 2]", "json"), ("- a\n- b\n", "yaml"), ("3", "yaml")]
)
def test_the_top_level_must_be_a_table(text: str, fmt: Any) -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text, fmt)
    assert "must be a table at the top level" in _problems(caught)[0]


def test_unreadable_files_are_problems(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError) as missing:
        load_workflow(tmp_path / "nope.toml")
    assert _problems(missing) == ["no such file"]
    with pytest.raises(WorkflowError) as directory:
        load_workflow(tmp_path)
    assert _problems(directory) == ["is a directory, not a workflow file"]


def test_bad_utf8_is_located_and_a_bom_is_fine(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'name = "a"\ninitial = "\xff"\n')
    with pytest.raises(WorkflowError) as caught:
        load_workflow(bad)
    (problem,) = caught.value.problems
    assert problem.location == "line 2, column 12"
    assert "UTF-8" in problem.message
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(parse_document(TOML)).encode())
    assert load_workflow(bom) == parse_workflow(TOML)


# -- YAML's surprises ------------------------------------------------------------------------


def test_yaml_on_yes_no_and_dates_stay_strings() -> None:
    data = parse_document("on: {yes: no}\nwhen: 2024-01-02\nflag: true\nother: off\n", "yaml")
    assert data == {"on": {"yes": "no"}, "when": "2024-01-02", "flag": True, "other": "off"}


@pytest.mark.parametrize(
    "text",
    [
        "a: &a [*a]\n",
        "\n".join(
            [f"l0: &l0 [{', '.join(['x'] * 10)}]"]
            + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 8)]
        ),
    ],
    ids=["self-reference", "alias-bomb"],
)
def test_yaml_alias_tricks_are_refused(text: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_document(text, "yaml")
    assert "alias" in _problems(caught)[0]


# -- shape -----------------------------------------------------------------------------------


def test_every_shape_problem_is_reported_at_once_in_the_files_terms() -> None:
    text = TOML.replace("attempts = 3", 'attempts = "3"').replace(
        'handler = "agent.execute_tools"', "handler = 5\nretires = 2"
    )
    text = text.replace('unless = "step_limit_reached"', "if = 3")
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text)
    found = _problems(caught)
    assert "states.stream.retry.attempts: expected int, got str '3'" in found
    assert "states.execute_tools.handler: expected str, got int 5" in found
    assert any(
        p.startswith('states.execute_tools.retires: unknown key; did you mean "retry"?')
        for p in found
    )
    assert any(p.startswith("states.execute_tools.on.continue.if: ") for p in found)
    assert len(found) == 4


def test_missing_required_keys_and_wrong_literals() -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow('durability = "often"\n')
    found = _problems(caught)
    assert "name: missing; this key is required" in found
    assert "states: missing; this key is required" in found
    assert 'durability: expected one of "sync", "async", "exit"' in found


def test_wrong_container_types() -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow('{"name": "a", "initial": "s", "states": {"s": "x"}, "params": [1]}', "json")
    found = _problems(caught)
    assert "states.s: expected a table, got str" in found
    assert "params: expected a table, got list" in found


def test_both_next_and_on_next_is_a_problem() -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow('name="a"\ninitial="s"\n[states.s]\nnext="t"\non.next="u"\n')
    assert _problems(caught) == ["states.s: both `next` and `on.next` are given; keep one"]


def test_unusual_keys_are_quoted_in_locations() -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow('name="a"\ninitial="s"\n[states."my state"]\nfinal="yes"\n')
    assert _problems(caught) == ["states[\"my state\"].final: expected bool, got str 'yes'"]


# -- packaged workflows ----------------------------------------------------------------------


def test_packaged_workflows_are_found_by_name() -> None:
    names = packaged_workflows()
    assert "low_latency_agent" in names
    path = packaged_workflow_path("low_latency_agent")
    assert path.name == "low_latency_agent.toml"
    assert load_workflow(path).name == "low_latency_agent"


@pytest.mark.parametrize("name", ["no_such_workflow", "../engine/loader", ""])
def test_unknown_packaged_workflow(name: str) -> None:
    with pytest.raises(FileNotFoundError, match="low_latency_agent"):
        packaged_workflow_path(name)


# -- found by fuzzing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "location"),
    [("?\n", "[null]"), ("1: a\n", "[1]"), ("2024-01-01: x\n", '["2024-01-01"]')],
)
def test_yaml_keys_that_are_not_text_are_located(text: str, location: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text, "yaml")
    assert any(p.location == location for p in caught.value.problems), _problems(caught)


def test_line_breaking_characters_in_keys_are_escaped() -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow('"\u0085name" = "a"\n"a\u2028b" = 1\n')
    found = _problems(caught)
    assert '["\\u0085name"]: unknown key; did you mean "name"? ' in " ".join(found) + " "
    assert all(len(p.splitlines()) == 1 for p in found)
