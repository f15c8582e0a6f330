"""Hypothesis strategies for workflows: random *valid* workflow files with matching handlers.

`valid_workflows()` draws a `GeneratedWorkflow`: the file as plain data (`raw`, ready for
`structure_workflow`, `json.dumps`, `yaml.safe_dump` or `to_toml`) and a `Registry` holding its
handlers, guards and hooks. `mutations(gen)` breaks one thing and says where validation must
report it (`reported(problems, mutation.location)` checks that it did).

How a valid workflow is built, so that it validates by construction:
- non-final states form an order; every outcome ends with an unguarded fallback to a *later*
  state or a final state, so following fallbacks always ends in a final state;
- every state and final state is the target of an earlier state, so all are reachable;
- loops are branches back to an earlier (or the same) state that reaches this one through
  branches with no counter guard, each turned off for good by a counter that grows along every
  cycle through it (`transitions`, the visits of the loop's target or source, or `steps` when
  the target is a step state): either its own guard, or the guard of the exit branch before
  it, which then always wins;
- other guarded branches go forward, under `call` guards or counter guards that only turn off
  (one that turned on for good would win over the branches after it);
- background states are the tail of the order, so they are only followed by background or
  final states.

Driving a run of a generated workflow (the runner's stateful tests): handlers pick their outcome
through the service `SCRIPT`, a callable `(state, declared_outcomes) -> outcome`; `call` guards
ask the service `GUARDS`, a callable `(guard_ref, ctx) -> bool` (False when absent); hooks
append `(hook_ref, state)` to the list in the service `TRACE` when present. Streaming handlers
(async generators) yield one `Custom("generated", state)` event before their outcome.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from ._workflow_gen import OUTCOMES, valid_workflows
from ._workflow_kit import (
    FLAG_GUARD,
    GUARDS,
    HOOKS,
    MUTATION_KINDS,
    SCRIPT,
    TRACE,
    GeneratedWorkflow,
    Loop,
    Mutation,
    flag_guard,
    make_handler,
    reported,
    spin,
    to_toml,
    trace_hook,
)
from ._workflow_mutations import mutation_of

__all__ = [
    "FLAG_GUARD",
    "GUARDS",
    "HOOKS",
    "MUTATION_KINDS",
    "OUTCOMES",
    "SCRIPT",
    "TRACE",
    "GeneratedWorkflow",
    "Loop",
    "Mutation",
    "flag_guard",
    "make_handler",
    "mutated_workflows",
    "mutations",
    "reported",
    "spin",
    "to_toml",
    "trace_hook",
    "valid_workflows",
]


def mutations(
    gen: GeneratedWorkflow, *, kinds: Sequence[str] = MUTATION_KINDS
) -> st.SearchStrategy[Mutation]:
    """A single random mutation of `gen` that validation (or loading) must reject.

    With `kinds`, only those; an example where none of them applies is rejected (filtered).
    """
    unknown = set(kinds) - set(MUTATION_KINDS)
    if unknown:
        raise ValueError(f"unknown mutation kinds {sorted(unknown)}; see MUTATION_KINDS")
    return mutation_of(gen, tuple(kinds))


def mutated_workflows(
    *, max_states: int = 6
) -> st.SearchStrategy[tuple[GeneratedWorkflow, Mutation]]:
    """A valid workflow and one mutation of it."""
    return valid_workflows(max_states=max_states).flatmap(
        lambda gen: mutations(gen).map(lambda m: (gen, m))
    )
