"""The production clock and id source (the defaults of `Engine`); fakes live in testing."""

from __future__ import annotations

import time
import uuid


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Wall-clock seconds."""
        return time.time()

    def monotonic(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()


class RandomIds:
    """Random unique ids (uuid4), the default."""

    def new_id(self, prefix: str) -> str:
        """A new unique id."""
        return f"{prefix}-{uuid.uuid4().hex}"
