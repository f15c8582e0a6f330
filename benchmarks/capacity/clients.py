"""The load: N concurrent OpenAI streaming calls over real HTTP on loopback, one per client.

Each client is one voice call: it starts at its slot of the ramp, then runs streamed turns
back to back until the step's time is up, so that N streams are in flight for the whole
step. Like the real clients (issue 11), every request carries the whole transcript so far
(the replies it got, then a new user message), `stream: true`,
`stream_options.include_usage` and a session id of its own (`X-LiveKit-Session-ID` and
`user`). A turn is *completed* only if it was a 200 that ended with `data: [DONE]`, had at
least one content delta and no error frame. The time to first token is from just before the
request to the read that carried the first non-empty `content` delta.

Two clients: `raw` (raw_client.py, the default: cheap enough for the client core to keep up)
and `aiohttp` (a well-known client, to cross-check the raw one at low steps).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import orjson
from attrs import define, frozen

from capacity.fake_llm import WORDS
from capacity.lag import LagProbe
from capacity.raw_client import RawClient, RawConnection
from capacity.scan import FrameScan, Turn, failed

SYSTEM = "You are a voice assistant on a phone call. Be brief."


@frozen(kw_only=True)
class Load:
    """What one step of load produced, on the client side."""

    started: int
    """Turns started."""
    turns: tuple[Turn, ...]
    """Turns that ended (a turn cut off at the step's hard limit is started, not here)."""
    wall: float
    """Seconds from the first request to the last turn's end."""
    client_cpu: float
    """CPU seconds of this (client) process over the step."""
    client_lag: dict[str, Any]
    """The client process's own event-loop lag (is the client keeping up?)."""


@define
class _Counter:
    started: int = 0


@frozen(kw_only=True)
class Plan:
    """The shape of one step."""

    url: str
    """`http://HOST:PORT/v1/chat/completions`."""
    model: str
    """The `model` field (an agent name for loopwright)."""
    concurrency: int
    """Clients (calls) in flight."""
    duration: float
    """Seconds during which clients start new turns."""
    ramp: float
    """Seconds over which the clients' first turns are spread."""
    turn_timeout: float
    """Seconds after which a turn is abandoned."""
    label: str
    """Makes session ids unique across steps and targets."""
    client: str = "raw"
    """`raw` or `aiohttp`."""


Send = Callable[[bytes, str], Awaitable[Turn]]
"""Sends one turn's body for a session id; returns the turn."""


async def run_load(plan: Plan) -> Load:
    """Run one step of load; returns every finished turn."""
    probe = LagProbe()
    probe.start()
    turns: list[Turn] = []
    counter = _Counter()
    cpu, start = time.process_time(), time.perf_counter()
    async with AsyncExitStack() as stack:
        senders = await _senders(plan, stack)
        calls = [
            asyncio.create_task(_call(senders(), plan, i, start, turns, counter))
            for i in range(plan.concurrency)
        ]
        _done, pending = await asyncio.wait(calls, timeout=plan.duration + plan.turn_timeout + 5)
        for task in pending:
            task.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
    wall = time.perf_counter() - start
    client_cpu = time.process_time() - cpu
    await probe.stop()
    return Load(
        started=counter.started,
        turns=tuple(turns),
        wall=wall,
        client_cpu=client_cpu,
        client_lag=probe.read(),
    )


async def _senders(plan: Plan, stack: AsyncExitStack) -> Callable[[], Send]:
    """A factory of per-call senders for the plan's client kind."""
    if plan.client == "raw":
        client = RawClient(plan.url)
        return lambda: _RawSender(client, plan.turn_timeout).send
    timeout = aiohttp.ClientTimeout(total=plan.turn_timeout)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout)
    await stack.enter_async_context(session)
    return lambda: functools.partial(_aiohttp_turn, session, plan.url)


async def _call(
    send: Send, plan: Plan, index: int, start: float, turns: list[Turn], counter: _Counter
) -> None:
    """One call: turns back to back until the step's time is up."""
    await asyncio.sleep(plan.ramp * index / plan.concurrency)
    session_id = f"cap-{plan.label}-{index}"
    messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM}]
    number = 0
    while time.perf_counter() - start < plan.duration:
        number += 1
        messages.append({"role": "user", "content": f"Question number {number}, please."})
        body = {
            "model": plan.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": session_id,
        }
        counter.started += 1
        turn = await send(orjson.dumps(body), session_id)
        turns.append(turn)
        if not turn.ok:
            return  # a failed call hangs up, as a voice platform would
        messages.append({"role": "assistant", "content": WORDS})


class _RawSender:
    """One call's connection, opened again when the server closed it."""

    def __init__(self, client: RawClient, timeout: float) -> None:
        self._client, self._timeout = client, timeout
        self._connection: RawConnection | None = None

    async def send(self, body: bytes, session_id: str) -> Turn:
        connection = self._connection
        try:
            async with asyncio.timeout(self._timeout):
                if connection is None or not connection.usable:
                    connection = self._connection = await self._client.connect()
                return await connection.turn(self._client.request(body, session_id))
        except OSError as err:
            return failed(f"connect: {type(err).__name__}")
        except TimeoutError:
            return failed("timeout", connection.frames if connection else 0)
        finally:
            if connection is not None and not connection.idle:
                connection.close()  # cancelled or timed out mid-turn: hang up


async def _aiohttp_turn(
    session: aiohttp.ClientSession, url: str, body: bytes, session_id: str
) -> Turn:
    headers = {"content-type": "application/json", "x-livekit-session-id": session_id}
    scan = FrameScan(time.perf_counter())
    try:
        async with session.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                return failed(f"status {response.status}")
            async for data in response.content.iter_any():
                scan.feed(data)
    except TimeoutError:
        return failed("timeout", scan.frames)
    except aiohttp.ClientError as err:
        return failed(type(err).__name__, scan.frames)
    return scan.turn()


def failures(turns: tuple[Turn, ...]) -> dict[str, int]:
    """How many turns failed, by reason."""
    return dict(Counter(t.failure for t in turns if not t.ok))
