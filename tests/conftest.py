"""Suite-wide settings: Hypothesis profiles (HYPOTHESIS_PROFILE=ci is bigger)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, settings

from tests.pg import postgres_schema

settings.register_profile("default", max_examples=40, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A PostgreSQL store URL on a fresh schema (see tests/pg.py: skips, or fails on CI)."""
    async with postgres_schema() as url:
        yield url
