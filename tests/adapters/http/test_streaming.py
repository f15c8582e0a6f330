"""`SSEResponse` under an ASGI server's `send` and `receive` (the edge, recorded)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from loopwright.adapters.http.sse import DONE
from loopwright.adapters.http.streaming import SSEResponse


class Client:
    """The server side of one connection: records what is sent; `leave()` disconnects."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._gone = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def receive(self) -> dict[str, Any]:
        await self._gone.wait()
        return {"type": "http.disconnect"}

    def leave(self) -> None:
        self._gone.set()

    @property
    def bodies(self) -> list[tuple[bytes, bool]]:
        return [(m["body"], m["more_body"]) for m in self.sent if m["type"] == "http.response.body"]


async def test_the_frame_ending_with_done_ends_the_body_and_nothing_after_is_read() -> None:
    read: list[bytes] = []
    closed: list[bool] = []

    async def frames() -> AsyncIterator[bytes]:
        try:
            for frame in (b"data: 1\n\n", b"data: 2\n\n" + DONE, b"data: late\n\n"):
                read.append(frame)
                yield frame
        finally:
            closed.append(True)

    client = Client()
    ends: list[bool] = []

    async def on_close(disconnected: bool) -> None:
        ends.append(disconnected)

    await SSEResponse(frames(), ping_s=5.0, on_close=on_close)({}, client.receive, client.send)
    assert client.sent[0]["type"] == "http.response.start"
    assert client.bodies == [(b"data: 1\n\n", True), (b"data: 2\n\n" + DONE, False)]
    assert len(read) == 2 and closed == [True]
    assert ends == [False]


async def test_frames_without_done_end_with_an_empty_last_body() -> None:
    async def frames() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"

    client = Client()
    await SSEResponse(frames(), ping_s=5.0)({}, client.receive, client.send)
    assert client.bodies == [(b"data: 1\n\n", True), (b"", False)]


async def test_a_client_that_leaves_cancels_the_frames_and_is_reported() -> None:
    started = asyncio.Event()
    closed: list[bool] = []

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield b"data: 1\n\n"
            started.set()
            await asyncio.Event().wait()  # a model that never answers
            yield DONE
        finally:
            closed.append(True)

    client = Client()
    ends: list[bool] = []

    async def on_close(disconnected: bool) -> None:
        ends.append(disconnected)

    response = asyncio.ensure_future(
        SSEResponse(frames(), ping_s=5.0, on_close=on_close)({}, client.receive, client.send)
    )
    await started.wait()
    client.leave()
    await response
    assert closed == [True] and ends == [True]
    assert client.bodies == [(b"data: 1\n\n", True)]
