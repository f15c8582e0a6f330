"""Graph checks of a workflow's transitions: reachability and cycles no counter bounds.

A run can only loop forever along a cycle of transitions whose edges stay enabled. An edge is
turned off for good once a counter passes its bound (`unless` an `at_least` guard, or `if` a
`below` guard), and the counters only grow: `transitions` on every edge, `steps` in `step`
states, `visits.<s>` each time `s` is entered. So an edge bounds a cycle when its counter grows
along that cycle, i.e. when the cycle passes through one of the states that make it grow: every
state for `transitions`, the step states for `steps`, `s` for `visits.<s>`. `Edge.grows_in` is
that set (empty for unguarded or user-guarded edges). Since the first branch whose guards
pass wins, a branch is also off for good once an earlier branch of its outcome passes for good
(`if` an `at_least` guard, `unless` a `below` guard): the usual "leave the loop after N
visits" shape, `again = [{to = "end", if = "enough"}, {to = "loop"}]`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from attrs import frozen

from loopwright.schemas import Branch, Workflow

from ._locate import join_path, quote
from .errors import Problem

_SEARCH_BUDGET = 200_000


@frozen(kw_only=True)
class Edge:
    """One branch of an outcome, as a graph edge."""

    source: str
    target: str
    location: str
    """Where the branch is written (`states.a.on.next` or `states.a.on.next[1]`)."""
    grows_in: frozenset[str] = frozenset()
    """States whose entry grows a counter that turns this edge off for good (see above)."""


def reachable(start: Iterable[str], edges: Iterable[Edge], *, reverse: bool = False) -> set[str]:
    """States reachable from `start` (or that reach it, with `reverse`)."""
    adjacency: dict[str, list[str]] = {}
    for edge in edges:
        src, dst = (edge.target, edge.source) if reverse else (edge.source, edge.target)
        adjacency.setdefault(src, []).append(dst)
    seen = set(start)
    queue = deque(seen)
    while queue:
        for nxt in adjacency.get(queue.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def unbounded_cycles(
    states: Sequence[str], edges: Sequence[Edge], *, limit: int = 5
) -> tuple[list[list[Edge]], bool]:
    """Up to `limit` simple cycles that no edge on them bounds, shortest first.

    Returns the cycles (as edge lists starting at their state that comes first in `states`) and
    whether the search finished: False only when it gave up before finding any cycle, with
    unchecked cycles left (a graph far larger than workflows are).
    """
    kept = _prune(edges)
    order = {name: i for i, name in enumerate(states)}
    finder = _CycleFinder(kept, order, limit)
    for start in sorted({e.source for e in kept}, key=order.__getitem__):
        finder.search(start)
        if finder.stopped:
            break
    cycles = sorted(finder.found, key=len)
    return cycles, bool(cycles) or finder.budget > 0


def _prune(edges: Sequence[Edge]) -> list[Edge]:
    """Drop edges that bound every cycle through them, until nothing changes.

    An edge is kept when some cycle through it avoids every state that makes it grow; any cycle
    with a dropped edge is bounded by the first edge of it that was dropped.
    """
    kept = list(edges)
    changed = True
    while changed:
        changed = False
        for edge in list(kept):
            if not _on_free_cycle(edge, kept):
                kept.remove(edge)
                changed = True
    return kept


def _on_free_cycle(edge: Edge, edges: Sequence[Edge]) -> bool:
    banned = edge.grows_in
    if edge.source in banned or edge.target in banned:
        return False
    usable = [e for e in edges if e.source not in banned and e.target not in banned]
    return edge.source in reachable([edge.target], usable)


class _CycleFinder:
    """Depth-first search for unbounded simple cycles, each found from its first state.

    Parallel edges are one step holding every edge still usable; a path is only extended while
    each of its steps keeps an edge that the states on it do not bound, and while the start can
    still be reached from its end (which keeps the search out of paths that never close).
    """

    def __init__(self, edges: Sequence[Edge], order: Mapping[str, int], limit: int) -> None:
        self.steps: dict[str, dict[str, list[Edge]]] = {}
        for edge in edges:
            self.steps.setdefault(edge.source, {}).setdefault(edge.target, []).append(edge)
        self.order = order
        self.limit = limit
        self.found: list[list[Edge]] = []
        self.budget = _SEARCH_BUDGET

    @property
    def stopped(self) -> bool:
        return self.budget <= 0 or len(self.found) >= self.limit

    def search(self, start: str) -> None:
        self._extend(start, start, [], {start})

    def _extend(self, start: str, here: str, path: list[list[Edge]], on_path: set[str]) -> None:
        for target, parallel in self.steps.get(here, {}).items():
            if self.stopped:
                return
            self.budget -= 1
            states = on_path | {target}
            steps = [[e for e in step if not e.grows_in & states] for step in [*path, parallel]]
            if not all(steps):
                continue  # some step is bounded on every cycle that extends this path
            if target == start:
                self.found.append([step[0] for step in steps])
            elif self._open(start, target, on_path) and self._can_close(start, target, states):
                self._extend(start, target, steps, states)

    def _open(self, start: str, state: str, on_path: set[str]) -> bool:
        """Whether a cycle found from `start` may still visit `state`."""
        return state not in on_path and self.order[state] > self.order[start]

    def _can_close(self, start: str, here: str, on_path: set[str]) -> bool:
        """Whether some path leads from `here` back to `start` off the current path."""
        seen = {here}
        queue = deque([here])
        while queue:
            for target, parallel in self.steps.get(queue.popleft(), {}).items():
                self.budget -= 1
                if all(e.grows_in & on_path for e in parallel):
                    continue
                if target == start:
                    return True
                if target not in seen and self._open(start, target, on_path):
                    seen.add(target)
                    queue.append(target)
        return False


def graph_problems(wf: Workflow) -> Iterable[Problem]:
    """Unreachable states, dead ends, background order and unbounded cycles."""
    edges = list(_edges(wf))
    finals = [name for name, s in wf.states.items() if s.final]
    if wf.initial in wf.states:
        seen = reachable([wf.initial], edges)
        for name in wf.states:
            if name not in seen:
                yield Problem(
                    join_path(("states", name)),
                    f"unreachable from the initial state {quote(wf.initial)}; add a transition to "
                    "it or remove it",
                )
    if not finals and wf.states:
        yield Problem("states", "no final state; add one with `final = true`")
    else:
        ends = reachable(finals, edges, reverse=True)
        for name in wf.states:
            if name not in ends:
                yield Problem(
                    join_path(("states", name)),
                    "no final state is reachable from here; add a transition towards one",
                )
    yield from _background_problems(wf, edges)
    yield from _cycle_problems(wf, edges)


def _edges(wf: Workflow) -> Iterable[Edge]:
    growth = _Growth(wf)
    for name, state in wf.states.items():
        if state.final:
            continue
        for outcome, branches in state.on.items():
            for i, branch in enumerate(branches):
                if branch.to in wf.states:
                    where = ("states", name, "on", outcome, *(() if len(branches) == 1 else (i,)))
                    yield Edge(
                        source=name,
                        target=branch.to,
                        location=join_path(where),
                        grows_in=growth.turns_off(branches, i),
                    )


class _Growth:
    """Which counters turn a branch off for good, as the states whose entry grows them."""

    def __init__(self, wf: Workflow) -> None:
        self.wf = wf
        self.all = frozenset(wf.states)
        self.steps = frozenset(n for n, s in wf.states.items() if s.step)

    def turns_off(self, branches: Sequence[Branch], index: int) -> frozenset[str]:
        """A branch is off once its own guard fails for good, or an earlier one passes for good."""
        branch = branches[index]
        grows = self._part(branch.if_, "below") | self._part(branch.unless, "at_least")
        for earlier in branches[:index]:
            grows |= self._always_passes(earlier)
        return grows

    def _always_passes(self, branch: Branch) -> frozenset[str]:
        # Both guards of a branch must pass for good: only a cycle growing both counters does
        # that, which entering a state in both sets guarantees (a safe under-estimate).
        parts = []
        for ref, passes_when in ((branch.if_, "at_least"), (branch.unless, "below")):
            if ref is not None:
                parts.append(self._part(ref, passes_when))
        return frozenset.intersection(*parts) if parts else frozenset()

    def _part(self, ref: str | None, bound: str) -> frozenset[str]:
        """Where the counter of guard `ref` grows, if the guard has a bound of kind `bound`."""
        guard = self.wf.guards.get(ref) if ref is not None else None
        if guard is None or guard.counter is None or getattr(guard, bound) is None:
            return frozenset()
        if guard.counter == "transitions":
            return self.all
        if guard.counter == "steps":
            return self.steps
        return frozenset({guard.counter.removeprefix("visits.")}) & self.all


def _background_problems(wf: Workflow, edges: Iterable[Edge]) -> Iterable[Problem]:
    for edge in edges:
        source, target = wf.states[edge.source], wf.states[edge.target]
        if source.background and not (target.background or target.final):
            yield Problem(
                edge.location,
                f"background state {quote(edge.source)} continues to the foreground state "
                f"{quote(edge.target)}, but the foreground cannot resume after the background "
                f"starts; mark {quote(edge.target)} `background = true` or go to a final state",
            )


def _cycle_problems(wf: Workflow, edges: list[Edge]) -> Iterable[Problem]:
    cycles, complete = unbounded_cycles(list(wf.states), edges)
    for cycle in cycles:
        names = " → ".join([*(e.source for e in cycle), cycle[0].source])
        yield Problem(
            cycle[0].location,
            f"the cycle {names} can repeat forever: no counter that grows along it turns "
            f"any of its transitions off ({', '.join(e.location for e in cycle)}); guard one "
            f'of them, e.g. `unless = "too_many"` with [guards.too_many] counter = '
            f'"visits.{cycle[0].source}", at_least = 10, or put a branch guarded by '
            '`if = "too_many"` before it',
        )
    if not complete:
        yield Problem(
            "states",
            "too many paths to check that every cycle is bounded; split the workflow up",
        )
