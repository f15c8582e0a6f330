"""The only module that imports `transitions`: compiles a workflow into one `Machine`.

Design (measured, see benchmarks/bench_engine.py): one synchronous `Machine` per workflow, built
once, with callables only. Runs are *not* added with `add_model` (it scans a list: O(live runs)
per start); each transition calls `Event.trigger(model, ctx)` on a tiny slotted model instead,
which transitions supports for any object carrying the state attribute. Handlers and I/O run in
the runner, never in transitions callbacks, so the synchronous machine is enough.
"""

from __future__ import annotations

from typing import Any

from transitions import Machine, State

from .compiled import Compiled
from .errors import NoBranchError, UndeclaredOutcomeError


class RunModel:
    """The per-run model transitions mutates: just the current state."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


class WorkflowMachine:
    """Decides which transition an outcome takes (guards) and runs the file's hooks."""

    def __init__(self, compiled: Compiled) -> None:
        wf = compiled.workflow
        self.compiled = compiled
        hooks = compiled.hooks
        states = [
            State(
                name,
                on_enter=[hooks[h] for h in sd.hooks.on_enter],
                on_exit=[hooks[h] for h in sd.hooks.on_exit],
            )
            for name, sd in wf.states.items()
        ]
        self._machine = Machine(
            model=None,
            states=states,
            initial=wf.initial,
            auto_transitions=False,
            send_event=False,
            model_override=True,
        )
        self.declared: dict[str, frozenset[str]] = {}
        for name, sd in wf.states.items():
            self.declared[name] = frozenset(sd.on)
            before: list[Any] = [hooks[h] for h in sd.hooks.before]
            after: list[Any] = [hooks[h] for h in sd.hooks.after]
            for outcome, branches in sd.on.items():
                for branch in branches:
                    self._machine.add_transition(
                        trigger=outcome,
                        source=name,
                        dest=branch.to,
                        conditions=_guards(compiled, branch.if_),
                        unless=_guards(compiled, branch.unless),
                        before=before,
                        after=after,
                    )
        self._events = self._machine.events

    def enter_initial(self, ctx: Any) -> None:
        """Run the initial state's `on_enter` hooks (transitions only runs them on entry)."""
        for ref in self.compiled.workflow.states[self.compiled.workflow.initial].hooks.on_enter:
            self.compiled.hooks[ref](ctx)

    def fire(self, state: str, outcome: str, ctx: Any) -> str:
        """Take the transition for `outcome` from `state`; return the new state.

        Raises: UndeclaredOutcomeError, NoBranchError (every branch guarded off).
        """
        if outcome not in self.declared[state]:
            raise UndeclaredOutcomeError(state, outcome, self.declared[state])
        model = RunModel(state)
        if not self._events[outcome].trigger(model, ctx):
            raise NoBranchError(
                f"state {state!r}: every branch of outcome {outcome!r} was guarded off; "
                "add an unguarded last branch"
            )
        return model.state


def _guards(compiled: Compiled, name: str | None) -> list[Any]:
    return [] if name is None else [compiled.guards[name]]
