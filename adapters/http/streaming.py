"""An ASGI response for one SSE stream: pings while idle, and a client that leaves cancels it.

Starlette's `StreamingResponse` notices a disconnect only when a write fails (ASGI 2.4) and
then leaves the body iterator to the garbage collector. A barge-in must cancel the run at once,
even while it waits for the model's first token, and the run must be closed before the request
ends, so this response watches `http.disconnect` itself and closes the frames it was given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from .keepalive import KeepAlive
from .sse import DONE

__all__ = ["SSE_HEADERS", "SSEResponse"]

_log = logging.getLogger(__name__)

SSE_HEADERS: Sequence[tuple[bytes, bytes]] = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx would otherwise hold the tokens back
)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class SSEResponse:
    """Sends `frames` as a `text/event-stream` body; a frame ending with `data: [DONE]` is
    the last one (the frames are not read further).

    `on_close(disconnected)` runs once the frames are closed, outside any cancellation:
    `disconnected` tells whether the client left before the stream ended.
    """

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        *,
        ping_s: float,
        headers: Sequence[tuple[bytes, bytes]] = (),
        on_close: Callable[[bool], Awaitable[None]] | None = None,
    ) -> None:
        self._frames = frames
        self._ping_s = ping_s
        self._headers = [*SSE_HEADERS, *headers]
        self._on_close = on_close
        self._left = False
        self._done = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pump = asyncio.current_task()
        assert pump is not None
        watcher = asyncio.create_task(self._watch(receive, pump), name="sse-disconnect")
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._headers})
            await self._pump(send)
            self._done = True  # before any await: a late disconnect must not cancel cleanup
        except asyncio.CancelledError:
            if not self._left or pump.uncancel() > 0:
                raise  # cancelled from outside (server shutdown): not ours to swallow
        except OSError:  # the write failed: the client is gone
            self._left = True
        finally:
            watcher.cancel()
            await _close(self._frames)
            if self._on_close is not None:
                await self._on_close(self._left)

    async def _pump(self, send: Send) -> None:
        async def body(frame: bytes) -> None:
            await send({"type": "http.response.body", "body": frame, "more_body": True})

        async with KeepAlive(body, interval=self._ping_s) as keep:
            async for frame in self._frames:
                if frame.endswith(DONE):
                    # Nothing follows `[DONE]`: the body ends with it, in the same write.
                    await send({"type": "http.response.body", "body": frame, "more_body": False})
                    return
                await keep.send(frame)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _watch(self, receive: Receive, pump: asyncio.Task[Any]) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if self._done:
                    return
                self._left = True
                pump.cancel()
                return


async def _close(frames: AsyncIterator[bytes]) -> None:
    aclose = getattr(frames, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception:  # the stream already ended for the client; only the log can tell
        _log.exception("closing an SSE stream failed")
