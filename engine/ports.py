"""Ports: the small protocols adapters implement. No implementation lives here."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Protocol

from loopwright.schemas import RunRecord


class Clock(Protocol):
    """Time source; tests inject a fixed or manual clock."""

    def now(self) -> float:
        """Wall-clock seconds since the epoch (timestamps in records)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds (durations, caps, timeouts)."""
        ...


class IdSource(Protocol):
    """Id generator; tests inject sequential ids."""

    def new_id(self, prefix: str) -> str:
        """Return a new unique id starting with `prefix` (`run`, `msg`, ...)."""
        ...


class RunStore(Protocol):
    """Durable run records with compare-and-set writes and lease epochs (fencing).

    Contract (tests/contracts/run_store.py runs it on every implementation):
    - `create` inserts; creating an id that exists is a no-op (idempotent by id).
    - `save` replaces the stored record unless it is stale: it raises `StaleWriteError` when
      `record.epoch < stored.epoch`, or the epochs are equal and `record.seq < stored.seq`.
      Saving the same record twice is a no-op. Saving an unknown id raises `RunNotFoundError`.
    - `claim` atomically increments the stored epoch and returns the record with it; every
      write at an older epoch is refused from then on.
    """

    async def create(self, record: RunRecord) -> None:
        """Insert a new run record (no-op if the id exists)."""
        ...

    async def load(self, run_id: str) -> RunRecord | None:
        """Return the record, or None if there is none."""
        ...

    async def save(self, record: RunRecord) -> None:
        """Write a checkpoint. Raises: StaleWriteError, RunNotFoundError."""
        ...

    async def claim(self, run_id: str) -> RunRecord:
        """Take the lease: bump the epoch and return the record. Raises: RunNotFoundError."""
        ...

    async def list_runs(
        self, *, unfinished: bool = False, key: str | None = None, limit: int = 100
    ) -> Sequence[RunRecord]:
        """Newest first; `unfinished` keeps status `running` or `background` only."""
        ...


class LLM(Protocol):
    """An OpenAI-compatible chat completions endpoint, as plain dicts.

    `stream` yields each chunk as the provider sent it (parsed JSON, not copied or validated)
    and raises `LLMError` (taxonomy code) on an error status, an error event or an error
    object inside a chunk. Closing the iterator early aborts the HTTP request.
    """

    def stream(self, body: Mapping[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Stream a `stream: true` request; `body` is the request body."""
        ...

    async def complete(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A non-streaming request; returns the `chat.completion` object as a dict."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
