"""Tools for the reliability tests (issue 5), loaded by module name through `Agent.tools`.

A sync tool that blocks its thread (it must never run on the event loop), an async one, and
tools whose arguments or results go wrong. Each records its calls in `CALLS`.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["async_weather", "blocking_weather", "count_to", "odd_result"]

BLOCK_S = 0.12
"""How long `blocking_weather` holds its thread: over the 50 ms slow-callback threshold."""

CALLS: list[tuple[str, dict[str, object]]] = []
"""(tool, arguments) of every call that ran, in order."""


def blocking_weather(city: str) -> dict[str, str]:
    """Today's weather, from a slow blocking client.

    Args:
        city: The city.
    """
    CALLS.append(("blocking_weather", {"city": city}))
    time.sleep(BLOCK_S)
    return {"city": city, "forecast": "rain"}


async def async_weather(city: str) -> dict[str, str]:
    """Tomorrow's weather.

    Args:
        city: The city.
    """
    CALLS.append(("async_weather", {"city": city}))
    await asyncio.sleep(0.01)
    return {"city": city, "forecast": "sun"}


def count_to(n: int) -> list[int]:
    """Count from 1 to n.

    Args:
        n: Where to stop (at most 100).
    """
    CALLS.append(("count_to", {"n": n}))
    return list(range(1, min(n, 100) + 1))


def odd_result(label: str) -> object:
    """Something JSON cannot hold.

    Args:
        label: A label.
    """
    CALLS.append(("odd_result", {"label": label}))
    return {label, "a set"}
