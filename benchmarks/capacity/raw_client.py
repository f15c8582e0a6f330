"""A bare HTTP/1.1 streaming client: one keep-alive connection per call, httptools parsing.

The default client of the benchmark. Measured on the 2-vCPU VM, an aiohttp client costs
~63 µs of CPU per chunk it reads (a task woken per chunk, its stream reader) and the fake LLM
~20 µs: at 500 streams that is the whole client core, so the clients, not the server,
would set the capacity. This one reads in the protocol's callbacks and wakes its task once
per turn; it sends what the OpenAI SDKs send (`Accept: application/json` on a stream too).
"""

from __future__ import annotations

import asyncio
import time
from typing import cast
from urllib.parse import urlsplit

import httptools

from capacity.scan import FrameScan, Turn, failed


class RawConnection(asyncio.Protocol):
    """One connection; `turn()` sends a request and resolves when its response has ended."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._scan: FrameScan | None = None
        self._status = 0
        self._waiter: asyncio.Future[Turn] | None = None

    @property
    def usable(self) -> bool:
        """Open, and the last response allowed keep-alive."""
        return self._transport is not None and not self._transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._finish(self._scan.turn() if self._scan and self._status == 200 else None)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def close(self) -> None:
        """Drop the connection (a turn in flight fails)."""
        if self._transport is not None:
            self._transport.close()

    @property
    def idle(self) -> bool:
        """No turn in flight (a turn cancelled half-way leaves it not idle)."""
        return self._waiter is None

    @property
    def frames(self) -> int:
        """Frames of the turn in flight so far."""
        return self._scan.frames if self._scan else 0

    async def turn(self, request: bytes) -> Turn:
        """Send `request`; the turn as the response ended (or failed)."""
        assert self._transport is not None
        self._scan = FrameScan(time.perf_counter())
        self._status = 0
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._waiter

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self._scan is not None and self._status == 200:
            self._scan.feed(body)

    def on_message_complete(self) -> None:
        if not self._parser.should_keep_alive():
            self.close()
        self._finish(self._scan.turn() if self._scan else None)

    def _finish(self, turn: Turn | None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if self._status and self._status != 200:
            turn = failed(f"status {self._status}")
        waiter.set_result(turn or failed("connection lost"))


class RawClient:
    """Makes the bytes of a request to one URL and holds one connection per caller."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\n"
            "Authorization: Bearer x\r\n"
        ).encode()

    def request(self, body: bytes, session_id: str) -> bytes:
        """The whole request."""
        return b"%sX-LiveKit-Session-ID: %s\r\nContent-Length: %d\r\n\r\n%s" % (
            self._head,
            session_id.encode(),
            len(body),
            body,
        )

    async def connect(self) -> RawConnection:
        """A new connection. Raises: OSError."""
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(RawConnection, self.host, self.port)
        return protocol
