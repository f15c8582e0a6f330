"""In-memory implementations of the engine ports: the test fakes and usable defaults."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import attrs

from loopwright.schemas import RunRecord

from ..clock import RandomIds, SystemClock
from ..errors import RunNotFoundError, StaleWriteError

__all__ = [
    "ManualClock",
    "MemoryRunStore",
    "RandomIds",
    "SequentialIds",
    "SystemClock",
]


class ManualClock:
    """A clock that only moves when told to (deterministic tests)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0

    def now(self) -> float:
        """Current fake wall-clock time."""
        return self._now

    def monotonic(self) -> float:
        """Current fake monotonic time."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        self._now += seconds
        self._mono += seconds


class SequentialIds:
    """Ids `prefix-1`, `prefix-2`, ... (deterministic tests)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def new_id(self, prefix: str) -> str:
        """The next id."""
        return f"{prefix}-{next(self._counter)}"


class MemoryRunStore:
    """A `RunStore` in a dict; same contract as the SQL store."""

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._order: dict[str, int] = {}
        self._counter = itertools.count()

    async def create(self, record: RunRecord) -> None:
        """Insert (no-op if the id exists)."""
        if record.id not in self._runs:
            self._runs[record.id] = record
            self._order[record.id] = next(self._counter)

    async def load(self, run_id: str) -> RunRecord | None:
        """The stored record or None."""
        return self._runs.get(run_id)

    async def save(self, record: RunRecord) -> None:
        """Compare-and-set write (see `RunStore`)."""
        stored = self._runs.get(record.id)
        if stored is None:
            raise RunNotFoundError(record.id)
        if record.epoch < stored.epoch or (
            record.epoch == stored.epoch and record.seq < stored.seq
        ):
            raise StaleWriteError(record.id, record.epoch, record.seq, stored.epoch, stored.seq)
        self._runs[record.id] = record

    async def claim(self, run_id: str) -> RunRecord:
        """Bump the epoch and return the record."""
        stored = self._runs.get(run_id)
        if stored is None:
            raise RunNotFoundError(run_id)
        claimed = attrs.evolve(stored, epoch=stored.epoch + 1)
        self._runs[run_id] = claimed
        return claimed

    async def list_runs(
        self, *, unfinished: bool = False, key: str | None = None, limit: int = 100
    ) -> Sequence[RunRecord]:
        """Newest first."""
        runs = sorted(self._runs.values(), key=lambda r: self._order[r.id], reverse=True)
        if unfinished:
            runs = [r for r in runs if r.status in ("running", "background")]
        if key is not None:
            runs = [r for r in runs if r.key == key]
        return runs[:limit]
