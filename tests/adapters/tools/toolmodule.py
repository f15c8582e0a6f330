"""A tool module for `PythonToolbox.from_modules` tests: a few tools among things that are not."""

from __future__ import annotations

import json
from os.path import join

from loopwright.adapters.tools.python import tool

CONSTANT = 3


def greet(name: str, excited: bool = False) -> str:
    """Greet someone by name.

    Args:
        name: Who to greet.
        excited: End with an exclamation mark.
    """
    return f"Hello, {name}{'!' if excited else '.'}"


async def async_lookup(city: str, *, days: int = 1) -> dict[str, object]:
    """Look up the weather.

    :param city: City name.
    :param days: How many days ahead.
    """
    return {"city": city, "days": days, "forecast": ["sun"] * days}


@tool(name="add_numbers", idempotent=True, timeout=2.0)
def plain_sum(a, b):  # type: ignore[no-untyped-def]  # marked, so a tool even unannotated
    """Add two numbers."""
    return a + b


def unannotated(x):  # type: ignore[no-untyped-def]
    """A helper without annotations: not a tool."""
    return x


def _private(x: int) -> int:
    """Private: not a tool."""
    return x


class Thing:
    """A class: not a tool."""

    def method(self, x: int) -> int:
        return x


helper = json.dumps
rejoin = join
