"""Static validation: every problem of a workflow at once, then the `Compiled` workflow.

A workflow that validates cannot get stuck: every state is reachable and reaches a final state,
every outcome a handler may return has a transition with an unguarded fallback, and every cycle
is bounded by a counter guard that grows along it (see `_graph`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from attrs import frozen

from loopwright.schemas import Branch, GuardDef, StateDef, Workflow

from ._graph import graph_problems
from ._locate import KeyPath, did_you_mean, join_path, quote
from .compiled import Compiled
from .errors import Problem, ResolveError, WorkflowError
from .loader import load_workflow
from .registry import HandlerSpec, Registry

_BASE_COUNTERS = ("steps", "transitions")


@frozen(kw_only=True)
class CounterGuard:
    """A compiled counter guard: `counter >= at_least` or `counter < below`.

    A bound naming a param is read from `ctx.params` at call time, so per-run overrides apply.
    """

    counter: str
    """`steps`, `transitions` or `visits.<state>` (0 until counted)."""
    at_least: int | str | None = None
    """True when the counter is >= this (an integer or a param name)."""
    below: int | str | None = None
    """True when the counter is < this (an integer or a param name)."""

    def __call__(self, ctx: Any) -> bool:
        value: int = ctx.counters.get(self.counter, 0)
        if self.at_least is not None:
            return value >= _bound(self.at_least, ctx)
        return self.below is not None and value < _bound(self.below, ctx)


def _bound(bound: int | str, ctx: Any) -> int:
    return ctx.params[bound] if isinstance(bound, str) else bound


def load_and_validate(path: str | os.PathLike[str], registry: Registry) -> Compiled:
    """Load a workflow file and validate it. Raises: WorkflowError."""
    return validate(load_workflow(path), registry, source=os.fspath(path))


def validate(workflow: Workflow, registry: Registry, *, source: str = "") -> Compiled:
    """Check `workflow` against `registry`; raise one WorkflowError listing every problem."""
    problems: list[Problem] = []
    handlers = _resolve_handlers(workflow, registry, problems)
    guards = _compile_guards(workflow, registry, problems)
    hooks = _resolve_hooks(workflow, registry, problems)
    data_type = _resolve_data_type(workflow, registry, problems)
    problems += _check_initial(workflow)
    for name, state in workflow.states.items():
        problems += _check_state(workflow, name, state, handlers.get(name))
    problems += _check_handler_params(workflow, handlers)
    problems += _check_limits(workflow)
    problems += graph_problems(workflow)
    if problems:
        raise WorkflowError(problems, source)
    return Compiled(
        workflow=workflow,
        handlers=handlers,
        guards=guards,
        hooks=hooks,
        data_type=data_type,
        params=dict(workflow.params),
        source=source,
    )


def _resolve(
    resolve: Callable[[str], Any], ref: str, location: str, problems: list[Problem]
) -> Any:
    try:
        return resolve(ref)
    except ResolveError as err:
        problems.append(Problem(location, str(err)))
    except Exception as err:  # importing user code may raise anything; report, never crash
        problems.append(
            Problem(location, f"resolving {quote(ref)} failed: {type(err).__name__}: {err}")
        )
    return None


def _resolve_handlers(
    wf: Workflow, registry: Registry, problems: list[Problem]
) -> dict[str, HandlerSpec]:
    handlers: dict[str, HandlerSpec] = {}
    for name, state in wf.states.items():
        where = join_path(("states", name, "handler"))
        if state.final:
            if state.handler is not None:
                problems.append(Problem(where, "a final state has no handler; remove it"))
        elif state.handler is None:
            problems.append(Problem(where, "missing; every state that is not final needs one"))
        elif spec := _resolve(registry.resolve_handler, state.handler, where, problems):
            handlers[name] = spec
    return handlers


def _resolve_hooks(
    wf: Workflow, registry: Registry, problems: list[Problem]
) -> dict[str, Callable[[Any], None]]:
    hooks: dict[str, Callable[[Any], None]] = {}
    for name, state in wf.states.items():
        for kind in ("on_enter", "on_exit", "before", "after"):
            for i, ref in enumerate(getattr(state.hooks, kind)):
                where = join_path(("states", name, "hooks", kind, i))
                if ref not in hooks and (
                    fn := _resolve(registry.resolve_hook, ref, where, problems)
                ):
                    hooks[ref] = fn
    return hooks


def _resolve_data_type(wf: Workflow, registry: Registry, problems: list[Problem]) -> type | None:
    if wf.data is None:
        return None
    data_type: type | None = _resolve(registry.resolve_data_type, wf.data, "data", problems)
    return data_type


def _compile_guards(
    wf: Workflow, registry: Registry, problems: list[Problem]
) -> dict[str, Callable[[Any], bool]]:
    guards: dict[str, Callable[[Any], bool]] = {}
    for name, guard in wf.guards.items():
        where = ("guards", name)
        found = list(_guard_shape_problems(wf, name, guard))
        problems += found
        if found:
            continue
        if guard.call is not None:
            if fn := _resolve(
                registry.resolve_guard, guard.call, join_path(where, "call"), problems
            ):
                guards[name] = fn
        else:
            assert guard.counter is not None  # _guard_shape_problems checked it
            guards[name] = CounterGuard(
                counter=guard.counter, at_least=guard.at_least, below=guard.below
            )
    return guards


def _guard_shape_problems(wf: Workflow, name: str, guard: GuardDef) -> Iterable[Problem]:
    where = ("guards", name)
    bounds = [b for b in ("at_least", "below") if getattr(guard, b) is not None]
    if (guard.counter is None) == (guard.call is None):
        yield Problem(
            join_path(where),
            "give exactly one of `counter` (with `at_least` or `below`) or `call`",
        )
        return
    if guard.call is not None:
        for bound in bounds:
            yield Problem(join_path(where, bound), "only counter guards have a bound; remove it")
        return
    if len(bounds) != 1:
        yield Problem(
            join_path(where), "a counter guard needs exactly one of `at_least` or `below`"
        )
    yield from _counter_name_problems(wf, name, guard.counter or "")
    for bound in bounds:
        yield from _int_ref_problems(wf, (*where, bound), getattr(guard, bound), minimum=0)


def _counter_name_problems(wf: Workflow, guard: str, counter: str) -> Iterable[Problem]:
    where = join_path(("guards", guard, "counter"))
    prefix, dot, state = counter.partition(".")
    if counter in _BASE_COUNTERS:
        return
    if prefix == "visits" and dot:
        if state not in wf.states:
            yield Problem(
                where, f"no state {quote(state)} to count visits of{did_you_mean(state, wf.states)}"
            )
        return
    yield Problem(
        where, f"unknown counter {quote(counter)}; use `steps`, `transitions` or `visits.<state>`"
    )


def _int_ref_problems(
    wf: Workflow, where: KeyPath, value: int | str | None, *, minimum: int
) -> Iterable[Problem]:
    """A bound or a limit: an integer >= minimum, or the name of an int param."""
    if value is None:
        return
    if isinstance(value, int):
        if value < minimum:
            yield Problem(join_path(where), f"must be at least {minimum}, got {value}")
        return
    if value not in wf.params:
        hint = did_you_mean(value, wf.params)
        yield Problem(
            join_path(where), f"unknown param {quote(value)}; define it under [params]{hint}"
        )
        return
    default = wf.params[value]
    if type(default) is not int:
        yield Problem(
            join_path(("params", value)),
            f"{join_path(where)} uses this param as a bound, so it must be an integer, "
            f"got {type(default).__name__} {quote(default)}",
        )
    elif default < minimum:
        yield Problem(
            join_path(("params", value)),
            f"{join_path(where)} uses this param, so it must be at least {minimum}, got {default}",
        )


def _check_initial(wf: Workflow) -> Iterable[Problem]:
    if not wf.initial:
        yield Problem("initial", "missing; name the state a run starts in")
    elif wf.initial not in wf.states:
        hint = did_you_mean(wf.initial, wf.states)
        yield Problem("initial", f"unknown state {quote(wf.initial)}{hint}")


def _check_state(
    wf: Workflow, name: str, state: StateDef, spec: HandlerSpec | None
) -> Iterable[Problem]:
    where = ("states", name)
    if state.final:
        for outcome in state.on:
            yield Problem(
                join_path(where, "on", outcome), "a final state has no transitions; remove it"
            )
        return
    if state.stop_reason is not None:
        yield Problem(
            join_path(where, "stop_reason"), "only a final state has a stop reason; remove it"
        )
    if spec is not None:
        yield from _outcome_problems(name, state, spec)
    for outcome, branches in state.on.items():
        yield from _branch_problems(wf, (*where, "on", outcome), branches)
    if state.retry is not None:
        yield from _retry_problems(where, state)
    if state.timeout_ms is not None and state.timeout_ms <= 0:
        yield Problem(join_path(where, "timeout_ms"), f"must be positive, got {state.timeout_ms}")


def _outcome_problems(name: str, state: StateDef, spec: HandlerSpec) -> Iterable[Problem]:
    where = ("states", name, "on")
    declared = ", ".join(sorted(spec.outcomes)) or "none"
    for outcome in sorted(spec.outcomes - set(state.on)):
        yield Problem(
            join_path(where, outcome),
            f"handler {quote(state.handler)} may return {quote(outcome)} but there is no "
            f'transition for it; add `on.{outcome} = "<state>"`',
        )
    for outcome in state.on:
        if outcome not in spec.outcomes:
            hint = did_you_mean(outcome, spec.outcomes)
            yield Problem(
                join_path(where, outcome),
                f"handler {quote(state.handler)} never returns {quote(outcome)} (it declares: "
                f"{declared}){hint}",
            )


def _branch_problems(
    wf: Workflow, where: KeyPath, branches: tuple[Branch, ...]
) -> Iterable[Problem]:
    for i, branch in enumerate(branches):
        here: KeyPath = where if len(branches) == 1 else (*where, i)
        if branch.to not in wf.states:
            yield Problem(
                join_path(here),
                f"unknown state {quote(branch.to)}{did_you_mean(branch.to, wf.states)}",
            )
        for key, guard in (("if", branch.if_), ("unless", branch.unless)):
            if guard is not None and guard not in wf.guards:
                hint = did_you_mean(guard, wf.guards)
                yield Problem(
                    join_path(here, key),
                    f"unknown guard {quote(guard)}; define it under [guards]{hint}",
                )
        winner = next((k for k in range(i) if _unguarded(branches[k])), None)
        if winner is not None:
            yield Problem(
                join_path(here),
                f"never taken: branch {winner} has no guard and always wins; "
                "put guarded branches first",
            )
    if branches and not _unguarded(branches[-1]):
        yield Problem(
            join_path(where),
            "every branch is guarded, so the run gets stuck when no guard passes; "
            "add an unguarded last branch",
        )


def _unguarded(branch: Branch) -> bool:
    return branch.if_ is None and branch.unless is None


def _retry_problems(where: KeyPath, state: StateDef) -> Iterable[Problem]:
    retry = state.retry
    assert retry is not None  # the caller checked it
    if retry.attempts < 1:
        yield Problem(
            join_path(where, "retry", "attempts"),
            f"must be at least 1 (it counts the first attempt), got {retry.attempts}",
        )
    for key in ("backoff_ms", "max_backoff_ms"):
        if (value := getattr(retry, key)) < 0:
            yield Problem(join_path(where, "retry", key), f"must be >= 0, got {value}")


def _check_limits(wf: Workflow) -> Iterable[Problem]:
    for key in ("max_steps", "max_transitions", "max_wall_ms"):
        yield from _int_ref_problems(wf, ("limits", key), getattr(wf.limits, key), minimum=1)


def _check_handler_params(wf: Workflow, handlers: Mapping[str, HandlerSpec]) -> Iterable[Problem]:
    reported: set[str] = set()
    for state, spec in handlers.items():
        for param, kind in spec.params.items():
            value = wf.params.get(param)
            if param in reported or (value is not None and _param_type_ok(value, kind)):
                continue
            reported.add(param)
            reader = f"handler {quote(wf.states[state].handler)} ({join_path(('states', state))})"
            name = getattr(kind, "__name__", repr(kind))
            if value is None:
                message = f"missing; {reader} reads it as {name}; add it under [params]"
            else:
                message = f"{reader} reads it as {name}, got {type(value).__name__} {quote(value)}"
            yield Problem(join_path(("params", param)), message)


def _param_type_ok(value: object, kind: Any) -> bool:
    # Files write `1` for a float freely, but a bool is never a number here.
    if kind is float:
        return type(value) in (int, float)
    if kind is int:
        return type(value) is int
    try:
        return isinstance(value, kind)
    except TypeError:  # a typing construct isinstance cannot check
        return True
