"""Tools of the demo agent (`loopwright demo`): deterministic, no network."""

from __future__ import annotations

from .python import tool

_FORECASTS = {
    "paris": ("light rain", 14),
    "london": ("overcast", 12),
    "tokyo": ("clear skies", 19),
    "new york": ("sunny", 22),
}


@tool(idempotent=True)  # a lookup: safe to repeat after a crash, no intent record needed
def get_weather(city: str) -> dict[str, object]:
    """Look up today's weather for a city.

    Args:
        city: The city name, e.g. "Paris".
    """
    sky, celsius = _FORECASTS.get(city.strip().lower(), ("mild and dry", 17))
    return {"city": city, "forecast": sky, "temperature_c": celsius}
