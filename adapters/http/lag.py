"""An event-loop lag probe (`LOOPWRIGHT_LAG_PROBE=1`): how late a 10 ms sleep wakes up.

For benchmarks, served at `GET /_lag` (reset on read). Off by default: it wakes the loop
100 times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

__all__ = ["LagProbe"]


class LagProbe:
    """Samples the loop's oversleep of a 10 ms timer until `stop()`."""

    def __init__(self, period_s: float = 0.010) -> None:
        self.period_s = period_s
        self._samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lag-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        # perf_counter, not loop.time(): uvloop's clock is cached per loop pass in 1 ms steps.
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.period_s)
            self._samples.append(max(0.0, time.perf_counter() - start - self.period_s) * 1000)

    def read(self) -> dict[str, Any]:
        """`{"p99_ms", "max_ms", "samples"}` since the last read, then reset."""
        samples, self._samples = sorted(self._samples), []
        if not samples:
            return {"p99_ms": 0.0, "max_ms": 0.0, "samples": 0}
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        return {"p99_ms": round(p99, 3), "max_ms": round(samples[-1], 3), "samples": len(samples)}
