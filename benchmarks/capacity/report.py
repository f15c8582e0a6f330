"""One row per (target, step), the markdown table, and the ratios issue 11 asks for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from attrs import frozen

LAG_LIMIT_MS = 20.0
CLIENT_CORE_LIMIT = 0.9
PAIRS: tuple[tuple[str, str, float | None], ...] = (
    ("loopwright", "sdk", 5.0),  # issue 11: >= 5x the typed-SDK relay's capacity
    ("loopwright", "aiohttp", 0.8),  # and >= 0.8x the aiohttp relay's
    ("aiohttp", "sdk", None),
)


@frozen(kw_only=True)
class Row:
    """One target at one concurrency step."""

    target: str
    """`sdk`, `aiohttp` or `loopwright`."""
    label: str
    """For the table."""
    concurrency: int
    """Concurrent streams (clients)."""
    started: int
    """Turns started."""
    completed: int
    """Turns completed (200, content, `[DONE]`, no error frame)."""
    failures: dict[str, int]
    """Failed turns by reason."""
    ttft_p50_ms: float
    """Time to first token, median of the completed turns."""
    ttft_p99_ms: float
    """Time to first token, 99th percentile."""
    chunks: int
    """Chunks relayed (`data:` frames the clients got, `[DONE]` excluded)."""
    server_cpu_s: float
    """Server CPU seconds over the step (every thread, every child process)."""
    idle_cpu_s: float
    """What the server burns idle (timers, the lag probe) over the step: subtracted."""
    cpu_us_per_chunk: float
    """(`server_cpu_s` - `idle_cpu_s`) / `chunks`, µs."""
    lag_p99_ms: float | None
    """The server's event-loop lag, 99th percentile (None: the server has no probe)."""
    lag_max_ms: float | None
    """The server's worst event-loop lag."""
    wall_s: float
    """Seconds of the step."""
    client_lag_p99_ms: float
    """The client process's own lag: a high value means the client side was the limit."""
    client_cpu_s: float
    """CPU seconds of the client process over the step."""
    llm_cpu_s: float
    """CPU seconds of the fake LLM over the step."""
    other_core_busy: float
    """(client + fake LLM CPU) / wall: the share of the other core in use."""
    server_core_neighbours: float
    """Share of the server's core other processes used: high means a noisy measurement."""
    server_core_softirq: float
    """Share of the server's core in softirq (mostly loopback TCP)."""
    server_core_stolen: float
    """Share of the server's core the hypervisor took (steal time)."""

    @property
    def client_bound(self) -> bool:
        """The client side (its core, its event loop) could not keep up: TTFT is inflated and
        a failure may be the clients'."""
        return self.client_lag_p99_ms > LAG_LIMIT_MS or self.other_core_busy > CLIENT_CORE_LIMIT

    @property
    def verdict(self) -> str:
        """`holds` (every turn completed, lag p99 within the limit), `fails`, or `unclear`
        (it failed while the clients were the bottleneck, or the server has no lag probe)."""
        all_done = self.started > 0 and self.completed == self.started
        if all_done and self.lag_p99_ms is not None and self.lag_p99_ms <= LAG_LIMIT_MS:
            return "holds"
        return "unclear" if self.client_bound or self.lag_p99_ms is None else "fails"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def table(rows: Sequence[Row]) -> str:
    """The markdown table, one line per row."""
    lines = [
        "| target | streams | completed / started | TTFT p50 ms | TTFT p99 ms | CPU µs/chunk "
        "| lag p99 ms | lag max ms | verdict | client lag p99 ms | client core | neighbours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.label} | {r.concurrency} | {r.completed} / {r.started} "
            f"| {r.ttft_p50_ms:.1f} | {r.ttft_p99_ms:.1f} | {r.cpu_us_per_chunk:.1f} "
            f"| {_ms(r.lag_p99_ms)} | {_ms(r.lag_max_ms)} | {r.verdict} "
            f"| {r.client_lag_p99_ms:.1f} | {r.other_core_busy:.0%} "
            f"| {r.server_core_neighbours:.0%} |"
        )
    return "\n".join(lines)


@frozen
class Capacity:
    """Between the highest step held and the lowest step above it that failed."""

    held: int
    """Highest step held (0: none)."""
    failed: int | None
    """Lowest step above `held` that failed (None: none did; the capacity is >= `held`)."""

    @property
    def known(self) -> bool:
        """Some step held or failed."""
        return bool(self.held) or self.failed is not None

    def __str__(self) -> str:
        if not self.known:
            return "unknown (no step held or failed)"
        if self.failed is None:
            return f">= {self.held} streams"
        span = f"{self.held} to < {self.failed}" if self.held else f"< {self.failed}"
        return f"{span} streams"


def capacity(rows: Sequence[Row], target: str) -> Capacity:
    """The target's capacity, bracketed by the steps run (unclear steps bound nothing)."""
    mine = [r for r in rows if r.target == target]
    held = max((r.concurrency for r in mine if r.verdict == "holds"), default=0)
    above = [r.concurrency for r in mine if r.verdict == "fails" and r.concurrency > held]
    return Capacity(held, min(above, default=None))


def ratio_bounds(a: Capacity, b: Capacity) -> tuple[float | None, float | None]:
    """(lowest, highest) a/b consistent with both brackets (None: unbounded or unknown)."""
    if not (a.known and b.known):
        return None, None
    low = a.held / b.failed if b.failed else None
    high = a.failed / b.held if a.failed is not None and b.held else None
    return low, high


def _cpu_at_lowest_common(rows: Sequence[Row], a: str, b: str) -> tuple[int, float] | None:
    cpu = {(r.target, r.concurrency): r.cpu_us_per_chunk for r in rows}
    common = sorted({s for t, s in cpu if t == a} & {s for t, s in cpu if t == b})
    if not common or not cpu[(b, common[0])]:
        return None
    return common[0], cpu[(a, common[0])] / cpu[(b, common[0])]


def summary(rows: Sequence[Row]) -> dict[str, Any]:
    """Capacity per target and the ratios: loopwright against each relay, aiohttp against SDK.

    CPU per chunk is compared at the lowest step both ran (the least loaded)."""
    targets = sorted({r.target for r in rows})
    caps = {t: capacity(rows, t) for t in targets}
    out: dict[str, Any] = {
        "lag_limit_ms": LAG_LIMIT_MS,
        "capacity": {t: {"held": c.held, "failed": c.failed} for t, c in caps.items()},
        "ratios": {},
    }
    for a, b, goal in PAIRS:
        if a not in caps or b not in caps:
            continue
        low, high = ratio_bounds(caps[a], caps[b])
        cpu = _cpu_at_lowest_common(rows, a, b)
        out["ratios"][f"{a}/{b}"] = {
            "capacity_low": None if low is None else round(low, 2),
            "capacity_high": None if high is None else round(high, 2),
            "capacity_goal": goal,
            "cpu_per_chunk": None if cpu is None else round(cpu[1], 2),
            "cpu_step": None if cpu is None else cpu[0],
        }
    return out


def _bound(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:.2f}"


def summary_text(result: dict[str, Any]) -> str:
    """The summary as lines for the terminal."""
    lines = [f"capacity (all turns complete, lag p99 <= {result['lag_limit_ms']:.0f} ms):"]
    for target, cap in result["capacity"].items():
        lines.append(f"  {target}: {Capacity(cap['held'], cap['failed'])}")
    for pair, r in result["ratios"].items():
        low, high = r["capacity_low"], r["capacity_high"]
        span = "unknown" if low is None and high is None else f"{_bound(low, '?')} to "
        span += "" if span == "unknown" else _bound(high, "unbounded")
        goal = "" if r["capacity_goal"] is None else f" (goal >= {r['capacity_goal']})"
        cpu = _bound(r["cpu_per_chunk"], "n/a")
        step = "" if r["cpu_step"] is None else f" at {r['cpu_step']} streams"
        lines.append(f"  {pair}: capacity ratio {span}{goal}; CPU per chunk {cpu}{step}")
    return "\n".join(lines)
