"""Mermaid diagrams: every state, every (outcome, branch), guards in labels, background marks."""

from __future__ import annotations

import re

from hypothesis import given

from loopwright.engine.diagram import to_mermaid
from loopwright.engine.loader import parse_workflow, structure_workflow
from loopwright.engine.testing.workflow_strategies import GeneratedWorkflow, valid_workflows
from loopwright.schemas import Workflow

AGENT = parse_workflow("""
name = "agent"
initial = "rebuild_memory"

[guards.step_limit_reached]
counter = "steps"
at_least = 10

[states.rebuild_memory]
handler = "agent.rebuild_memory"
description = "context: blocks; metadata"
next = "stream"

[states.stream]
handler = "agent.stream"
step = true
on = { tool_calls = "execute_tools", reply = "persist" }

[states.execute_tools]
handler = "agent.execute_tools"
on.continue = [{ to = "rebuild_memory", unless = "step_limit_reached" }, "persist"]

[states.persist]
handler = "agent.persist"
next = "summarize"

[states.summarize]
handler = "agent.summarize"
background = true
next = "done"

[states.done]
final = true
""")

# Every line the diagram may contain: a statement Mermaid's state diagram grammar accepts.
_ID = r"[A-Za-z][A-Za-z0-9_]*"
_LINE = re.compile(
    "|".join(
        [
            r"stateDiagram-v2",
            rf"    state \"[^\"\n]*\" as {_ID}",
            rf"    {_ID} : [^:;\n]+",
            rf"    \[\*\] --> {_ID}",
            rf"    {_ID} --> \[\*\]",
            rf"    {_ID} --> {_ID}: [^:;\n]+",
            rf"    note right of {_ID} : background",
            r"    classDef background [^\n]+",
            rf"    class {_ID}(,{_ID})* background",
        ]
    )
)


def _check_lines(text: str) -> list[str]:
    assert text.endswith("\n")
    lines = text.splitlines()
    bad = [line for line in lines if not _LINE.fullmatch(line)]
    assert not bad, bad
    return lines


def _ids(text: str) -> dict[str, str]:
    """State name to diagram id (aliases for names Mermaid cannot take as they are)."""
    return dict(re.findall(r'^    state "([^"]*)" as (\S+)$', text, re.MULTILINE))


def test_the_agent_loop_diagram() -> None:
    lines = _check_lines(to_mermaid(AGENT))
    assert lines[0] == "stateDiagram-v2"
    assert "    [*] --> rebuild_memory" in lines
    assert "    rebuild_memory --> stream: next" in lines
    assert "    execute_tools --> rebuild_memory: continue [unless step_limit_reached]" in lines
    assert "    execute_tools --> persist: continue" in lines
    assert "    done --> [*]" in lines
    assert "    rebuild_memory : context\u2236 blocks, metadata" in lines
    assert "    note right of summarize : background" in lines
    assert "    class summarize background" in lines
    assert not any("step" in line for line in lines if "class" in line)


def test_names_mermaid_cannot_take_get_an_alias() -> None:
    workflow = structure_workflow(
        {
            "name": "odd",
            "initial": "end",
            "states": {
                "end": {"handler": "h", "on": {"go on": {"to": "my state", "if": "a;b"}}},
                "my state": {"final": True, "description": 'say "hi": then\nturn direction LR'},
                "Default": {"handler": "h", "next": "end"},
            },
        }
    )
    text = to_mermaid(workflow)
    lines = _check_lines(text)
    ids = _ids(text)
    assert set(ids) == {"end", "my state", "Default"}
    assert f"    {ids['end']} --> {ids['my state']}: go on [if a,b]" in lines
    assert f"    {ids['my state']} : say 'hi'\u2236 then turn direction_LR" in lines


@given(valid_workflows())
def test_every_state_and_every_branch_appears(gen: GeneratedWorkflow) -> None:
    workflow: Workflow = structure_workflow(gen.raw)
    text = to_mermaid(workflow)
    lines = _check_lines(text)
    ids = {name: name for name in workflow.states} | _ids(text)
    assert f"    [*] --> {ids[workflow.initial]}" in lines
    for name, state in workflow.states.items():
        assert any(re.search(rf"\b{ids[name]}\b", line) for line in lines[1:]), name
        if state.final:
            assert f"    {ids[name]} --> [*]" in lines
        if state.background:
            assert f"    note right of {ids[name]} : background" in lines
        for outcome, branches in state.on.items():
            for branch in branches:
                guards = [f"if {branch.if_}"] * bool(branch.if_)
                guards += [f"unless {branch.unless}"] * bool(branch.unless)
                label = f"{outcome} [{', '.join(guards)}]" if guards else outcome
                assert f"    {ids[name]} --> {ids[branch.to]}: {label}" in lines
