"""Keep-alive comments for an idle SSE stream (LiveKit gives up after 10 s without a byte)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["PING", "KeepAlive"]

_log = logging.getLogger(__name__)

PING = b": ping\n\n"
"""A comment frame: keeps proxies and clients from timing out an idle stream; clients skip it."""


class KeepAlive:
    """Sends `PING` through `send` whenever no frame went out for `interval` seconds.

    `async with KeepAlive(response.write) as keep:` then `await keep.send(frame)` for every
    frame. A ping never goes out while a frame is being sent; `send` must accept whole frames
    from two tasks (aiohttp's `StreamResponse.write` does). A failed ping stops the pings
    silently: the next frame's send reports the broken connection.

    One timer per stream, not a task: it wakes once per interval, and only a ping (rare: the
    stream was idle) runs in a task of its own.
    """

    __slots__ = (
        "_busy",
        "_interval",
        "_last",
        "_loop",
        "_open",
        "_ping",
        "_send",
        "_timer",
        "pings",
    )

    def __init__(self, send: Callable[[bytes], Awaitable[object]], *, interval: float = 15.0):
        if interval <= 0:
            raise ValueError(f"keep-alive interval must be positive, got {interval}")
        self._send = send
        self._interval = interval
        self._last = 0.0
        self._busy = False
        self._open = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ping: asyncio.Task[None] | None = None
        self.pings = 0
        """Pings sent so far."""

    async def __aenter__(self) -> KeepAlive:
        loop = self._loop = asyncio.get_running_loop()
        self._last = loop.time()
        self._open = True
        self._timer = loop.call_at(self._last + self._interval, self._due)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._open = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ping, self._ping = self._ping, None
        if ping is not None:
            ping.cancel()
            await asyncio.wait([ping])
            if not ping.cancelled() and ping.exception() is not None:
                # Retrieved here; a broken connection also fails the next frame's send.
                _log.debug("keep-alive ping failed: %r", ping.exception())

    async def send(self, frame: bytes) -> None:
        """Send one frame (and postpone the next ping)."""
        self._busy = True
        try:
            await self._send(frame)
        finally:
            self._busy = False
            loop = self._loop
            self._last = loop.time() if loop is not None else 0.0

    def _due(self) -> None:
        loop = self._loop
        self._timer = None
        if not self._open or loop is None:
            return
        now = loop.time()
        if self._busy:  # a slow frame: look again soon rather than ping beside it
            self._timer = loop.call_at(now + self._interval / 4, self._due)
            return
        due = self._last + self._interval
        if due > now:
            self._timer = loop.call_at(due, self._due)
            return
        self._last = now
        self._ping = loop.create_task(self._ping_once(), name="sse-keepalive")

    async def _ping_once(self) -> None:
        await self._send(PING)  # a failure ends the pings: nothing re-arms the timer
        self.pings += 1
        loop = self._loop
        if self._open and loop is not None:
            self._timer = loop.call_at(self._last + self._interval, self._due)
