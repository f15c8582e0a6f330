"""Event-loop lag: a task that sleeps 10 ms in a loop and records how late it wakes up.

The same probe runs in every process the benchmark owns (the reference relays, the client
process), so their lag figures are comparable; `loopwright serve` is asked for the same
numbers at `GET /_lag` (see bench_capacity.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

TICK = 0.010


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (0.0 when empty); sorts a copy."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[rank]


class LagProbe:
    """Oversleep of a 10 ms sleep, in ms; `read()` summarises and resets."""

    def __init__(self) -> None:
        self._samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        # perf_counter, not loop.time(): uvloop's clock has 1 ms steps, cached per iteration.
        while True:
            start = time.perf_counter()
            await asyncio.sleep(TICK)
            self._samples.append((time.perf_counter() - start - TICK) * 1e3)

    def read(self) -> dict[str, Any]:
        """`{"p99_ms", "max_ms", "samples"}` since the last read, then reset."""
        samples, self._samples = self._samples, []
        return {
            "p99_ms": round(percentile(samples, 0.99), 3),
            "max_ms": round(max(samples, default=0.0), 3),
            "samples": len(samples),
        }
