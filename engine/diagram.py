"""Mermaid `stateDiagram-v2` text for a workflow (`loopwright graph FILE`)."""

from __future__ import annotations

import itertools
import re

from loopwright.schemas import Branch, Workflow

_PLAIN_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# Words Mermaid's (case-insensitive) state diagram lexer treats specially: such names get an id.
_RESERVED = frozenset(
    {"state", "note", "end", "class", "classdef", "direction", "default", "scale", "style",
     "click", "hide", "acctitle", "accdescr", "statediagram"}
)  # fmt: skip
# Labels end at `:`, `;` or a newline, and entity codes (`#59;`) need a `;`: use look-alikes.
_LABEL_CHARS = str.maketrans({":": "\u2236", ";": ",", "\n": " ", "\r": " ", '"': "'"})
_DIRECTION = re.compile(r"(direction)\s+", re.IGNORECASE)  # `direction lr` anywhere is a verb
_BACKGROUND_CLASS = "    classDef background fill:#eef3ff,stroke:#6c8ebf,stroke-dasharray:5 5"


def to_mermaid(workflow: Workflow) -> str:
    """The workflow as a Mermaid state diagram: every state, outcome and guard.

    Transitions are labelled `outcome` or `outcome [unless guard]`; states show their
    description; background states carry a note and the `background` class (dashed).
    """
    ids = _state_ids(workflow)
    lines = ["stateDiagram-v2"]
    lines += [f'    state "{_escape(n)}" as {i}' for n, i in ids.items() if n != i]
    lines.append(f"    [*] --> {_node(workflow.initial, ids)}")
    for name, state in workflow.states.items():
        for outcome, branches in state.on.items():
            lines += [
                f"    {ids[name]} --> {_node(b.to, ids)}: {_label(outcome, b)}" for b in branches
            ]
    lines += [f"    {ids[n]} --> [*]" for n, s in workflow.states.items() if s.final]
    lines += [
        f"    {ids[n]} : {_escape(s.description)}"
        for n, s in workflow.states.items()
        if s.description.strip()
    ]
    lines += _background(workflow, ids)
    return "\n".join(lines) + "\n"


def _state_ids(workflow: Workflow) -> dict[str, str]:
    """Each state's id: its name when Mermaid can take it as one, else a fresh `stateN`."""
    plain = {n for n in workflow.states if _PLAIN_ID.fullmatch(n) and n.lower() not in _RESERVED}
    fresh = (f"state{i}" for i in itertools.count())
    return {
        n: n if n in plain else next(i for i in fresh if i not in plain) for n in workflow.states
    }


def _node(name: str, ids: dict[str, str]) -> str:
    # A target that is not a state (an invalid file drawn anyway) still gets a node of its own.
    if name not in ids:
        taken = set(ids.values())
        ids[name] = next(f"missing{i}" for i in itertools.count() if f"missing{i}" not in taken)
    return ids[name]


def _label(outcome: str, branch: Branch) -> str:
    guards = [
        f"{word} {ref}" for word, ref in (("if", branch.if_), ("unless", branch.unless)) if ref
    ]
    label = f"{outcome} [{', '.join(guards)}]" if guards else outcome
    return _escape(label)


def _background(workflow: Workflow, ids: dict[str, str]) -> list[str]:
    marked = [ids[n] for n, s in workflow.states.items() if s.background]
    if not marked:
        return []
    notes = [f"    note right of {state_id} : background" for state_id in marked]
    return [*notes, _BACKGROUND_CLASS, f"    class {','.join(marked)} background"]


def _escape(text: str) -> str:
    text = " ".join(text.translate(_LABEL_CHARS).split()) or "_"
    return _DIRECTION.sub(r"\1_", text)
