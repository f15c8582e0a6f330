"""uvicorn (httptools, on the caller's event loop) serving an ASGI app: one way to start it for
`loopwright serve` and for the tests that need a live server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["Serving", "serving"]


class Serving:
    """A started server: where it listens, and its task (done when it stops)."""

    def __init__(self, server: Any, task: asyncio.Task[None]) -> None:
        self.server = server
        self.task = task
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        self.host: str = host
        self.port: int = port
        self.root = f"http://{host}:{port}"
        """`http://HOST:PORT`: the API is under `/v1`."""

    async def wait(self) -> None:
        """Until the server stops (SIGINT/SIGTERM: uvicorn handles them)."""
        await asyncio.shield(self.task)


@contextlib.asynccontextmanager
async def serving(asgi: Any, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[Serving]:
    """Start serving `asgi` (port 0 picks a free one); stop gracefully when the block ends.

    Raises what stopped the server before it listened (an address in use, a failed lifespan).
    """
    import uvicorn

    config = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        loop="none",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"the server stopped before it listened on {host}:{port}")
        await asyncio.sleep(0.005)
    try:
        yield Serving(server, task)
    finally:
        server.should_exit = True
        await task
