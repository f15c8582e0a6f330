"""The `LLM` port on the official `openai` SDK, with an aiohttp streaming hot path.

One shared `AsyncOpenAI` owns configuration, auth, `complete()` and the typed errors. The
streaming POST goes through aiohttp with the URL, headers and body the SDK would use, and the
body is split by our SSE decoder and parsed with orjson: measured on this machine it costs a
fraction of the SDK's typed stream per chunk (see benchmarks/bench_stream.py). Chunks are
yielded as the provider sent them. `transport="sdk"` keeps the whole request inside the SDK
(`with_streaming_response`, its httpx2 transport, `json.loads`) with the same yields and
errors; it reads bytes into our SSE decoder rather than `iter_lines()`, which decodes with
`errors="replace"` (invalid UTF-8 would pass silently) and splits lines at U+2028 like
`str.splitlines` (a JSON string may hold that character raw).

Where a stream ends: at `data: [DONE]`, or at a clean EOF after a chunk that carried a
`finish_reason` (a provider that omits `[DONE]` has still said it was done). A body that ends
with neither was cut short (corpus 22: the connection closed mid-answer, no finish, no usage,
no `[DONE]`), and so was a body that was not an SSE stream at all: both raise `stream_error`,
so the loop retries when nothing was shown yet and otherwise keeps the partial answer marked
incomplete, instead of storing half an answer as if it were whole.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, Literal

import aiohttp
import httpx2
import openai
import orjson

from loopwright.engine.llm_errors import llm_error_for

from .errors import (
    connection_exception,
    error_event,
    error_from_sdk,
    malformed,
    status_exception,
    stream_broken,
    stream_timeout,
    timeout_exception,
    truncated,
)
from .sse import SSEDecoder

Transport = Literal["aiohttp", "sdk"]
_DONE = b"[DONE]"
_DROPPED_HEADERS = frozenset({"host", "content-length", "accept-encoding", "connection"})
_MAX_TARGETS = 64  # cached (URL, headers) per model: a bound, models are a handful


async def sdk_request_target(
    client: openai.AsyncOpenAI, model: object, sdk_timeout: openai.Timeout
) -> tuple[str, list[tuple[str, str]]]:
    """The URL and headers the SDK would send for `POST /chat/completions`.

    The one place that relies on private SDK hooks: `_prepare_options` (API-key refresh,
    Azure api-key / AD token), `_build_request` (base URL, Azure deployment path and
    api-version query, default and auth headers) and `_prepare_request`. Only `model` of the
    body matters to them (Azure routes on it); the body itself is sent by the caller.
    """
    from openai._models import FinalRequestOptions

    options = FinalRequestOptions.construct(
        method="post",
        url="/chat/completions",
        json_data={"model": model},
        security={"bearer_auth": True},
        timeout=sdk_timeout,
    )
    options = await client._prepare_options(options)
    request = client._build_request(options)
    await client._prepare_request(request)
    auth = client.custom_auth
    if auth is not None:  # request-signing auth (workload identity): its first step only
        flow = auth.async_auth_flow(request)
        request = await flow.__anext__()
        await flow.aclose()
    headers = [
        (name, value)
        for name, value in request.headers.multi_items()
        if name.lower() not in _DROPPED_HEADERS
    ]
    return str(request.url), headers


def static_request_target(client: openai.AsyncOpenAI) -> bool:
    """Whether the SDK builds the same URL and headers for every request of one model.

    It does unless auth is computed per request: a request-signing `custom_auth` (workload
    identity, a provider runtime), an `api_key` given as a callable (refreshed before each
    request), or an Azure AD token provider. A static Azure key or token, default headers
    and query, the base URL and the Azure deployment path are all fixed by the client."""
    return (
        client.custom_auth is None
        and getattr(client, "_api_key_provider", None) is None
        and getattr(client, "_provider_runtime", None) is None
        and getattr(client, "workload_identity", None) is None
        and getattr(client, "_azure_ad_token_provider", None) is None
    )


class OpenAILLM:
    """Chat completions from any OpenAI-compatible endpoint, as plain dicts.

    Args:
        client: a configured `AsyncOpenAI` (or `AsyncAzureOpenAI`); shared, never closed here.
        base_url, api_key: used to build a client when none is given (else the SDK reads
            OPENAI_BASE_URL / OPENAI_API_KEY).
        transport: `aiohttp` (the fast path) or `sdk`.
            On `aiohttp`, the URL and headers the SDK would send are built once per model
            when they cannot change (`static_request_target`; ~0.2 ms a request otherwise), so
            changes to the client's configuration after the first request are not seen.
        connect_timeout: seconds to open a connection.
        first_byte_timeout: seconds from sending the request to the first body byte.
        read_timeout: seconds allowed between two reads once the stream has started.
    """

    def __init__(
        self,
        *,
        client: openai.AsyncOpenAI | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        transport: Transport = "aiohttp",
        connect_timeout: float = 10.0,
        first_byte_timeout: float = 60.0,
        read_timeout: float = 60.0,
    ) -> None:
        if transport not in ("aiohttp", "sdk"):
            raise ValueError(f"transport must be 'aiohttp' or 'sdk', not {transport!r}")
        self._owns_client = client is None
        base = client or openai.AsyncOpenAI(base_url=base_url, api_key=api_key)
        # Retries belong to the workflow's retry policy, never to the SDK.
        self._client = base.with_options(max_retries=0)
        self._transport = transport
        self._connect_timeout = connect_timeout
        self._first_byte_timeout = first_byte_timeout
        self._read_timeout = read_timeout
        self._sdk_timeout = openai.Timeout(read_timeout, connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._static_target = static_request_target(self._client)
        self._targets: dict[str, tuple[str, list[tuple[str, str]]]] = {}

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The SDK client (retries disabled) that owns configuration and auth."""
        return self._client

    def stream(self, body: Mapping[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Stream a chat completion; always asks for usage (`stream_options.include_usage`).

        Raises: LLMError (taxonomy code) on an error status, a timeout, an error event or an
        error object in a chunk, a malformed chunk, a broken connection, or a body that ends
        with neither `[DONE]` nor a `finish_reason` (`stream_error`: cut short).
        """
        options = dict(body.get("stream_options") or {})
        options["include_usage"] = True
        request = {**body, "stream": True, "stream_options": options}
        if self._transport == "sdk":
            return self._stream_sdk(request)
        return self._stream_aiohttp(request)

    # -- aiohttp transport ------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # No pool limit: each stream holds its connection for seconds.
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._connect_timeout, sock_read=self._read_timeout
                ),
            )
        return self._session

    async def _open(
        self, url: str, headers: list[tuple[str, str]], payload: bytes
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        """Send the request; return the response and its first bytes (or raise mapped)."""
        response: aiohttp.ClientResponse | None = None
        ok = False
        try:
            async with asyncio.timeout(self._first_byte_timeout):
                response = await self._http().post(url, data=payload, headers=headers)
                if response.status >= 400:
                    body = await response.read()
                    sdk_exc = status_exception(response.status, response.headers.items(), body, url)
                    raise error_from_sdk(sdk_exc) from sdk_exc
                first = await response.content.readany()
                ok = True
                return response, first
        except TimeoutError:
            timeout_exc = timeout_exception(url)
            raise error_from_sdk(timeout_exc) from timeout_exc
        except aiohttp.ClientError as exc:
            conn_exc = connection_exception(url, exc)
            raise error_from_sdk(conn_exc) from conn_exc
        finally:
            if response is not None and not ok:
                response.close()

    async def _target(self, model: object) -> tuple[str, list[tuple[str, str]]]:
        """The URL and headers of a request for `model` (cached, see `transport`)."""
        if not (self._static_target and isinstance(model, str)):
            return await sdk_request_target(self._client, model, self._sdk_timeout)
        found = self._targets.get(model)
        if found is None:
            found = await sdk_request_target(self._client, model, self._sdk_timeout)
            if len(self._targets) < _MAX_TARGETS:
                self._targets[model] = found
        return found

    async def _stream_aiohttp(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        url, headers = await self._target(body.get("model"))
        response, data = await self._open(url, headers, orjson.dumps(body))
        content = response.content
        decoder = SSEDecoder()
        clean = finished = False
        try:
            while data:
                for event, frame in decoder.feed(data):
                    chunk = _chunk(event, frame, orjson.loads)
                    if chunk is None:
                        continue
                    if chunk is _END:
                        clean = content.at_eof()
                        return
                    if not finished:
                        finished = _finishes(chunk)
                    yield chunk
                try:
                    data = await content.readany()
                except TimeoutError:
                    raise stream_timeout(self._read_timeout, True) from None
                except aiohttp.ClientError as exc:
                    raise stream_broken(f"the stream broke: {exc!r}") from exc
            for event, frame in decoder.close():
                chunk = _chunk(event, frame, orjson.loads)
                if chunk is _END:
                    clean = True
                    return
                if chunk is not None:
                    finished = finished or _finishes(chunk)
                    yield chunk
            clean = True  # the body was read to its end: the connection is reusable
            if not finished:
                raise truncated()
        finally:
            # A response read to its end keeps its connection; anything else aborts it.
            if clean:
                response.release()
            else:
                response.close()

    # -- SDK transport ----------------------------------------------------------------------

    async def _stream_sdk(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        async with AsyncExitStack() as stack:
            url = str(self._client.base_url)
            try:
                async with asyncio.timeout(self._first_byte_timeout):
                    manager = self._client.chat.completions.with_streaming_response.create(
                        **_sdk_kwargs(body), stream=True, timeout=self._sdk_timeout
                    )
                    response = await stack.enter_async_context(manager)
                    reads = response.iter_bytes().__aiter__()
                    data = await anext(reads, b"")
            except openai.OpenAIError as exc:
                raise error_from_sdk(exc) from exc
            except (TimeoutError, httpx2.TimeoutException):
                sdk_exc = timeout_exception(url)
                raise error_from_sdk(sdk_exc) from sdk_exc
            decoder = SSEDecoder()
            finished = False
            while data:
                for event, frame in decoder.feed(data):
                    chunk = _chunk(event, frame, json.loads)
                    if chunk is _END:
                        return
                    if chunk is not None:
                        finished = finished or _finishes(chunk)
                        yield chunk
                data = await _read_sdk(reads, self._read_timeout)
            for event, frame in decoder.close():
                chunk = _chunk(event, frame, json.loads)
                if chunk is _END:
                    return
                if chunk is not None:
                    finished = finished or _finishes(chunk)
                    yield chunk
            if not finished:
                raise truncated()

    # -- non-streaming and lifecycle --------------------------------------------------------

    async def complete(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A non-streaming chat completion, as the provider's JSON dict.

        Raises: LLMError (taxonomy code).
        """
        request = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                **_sdk_kwargs(request), timeout=self._sdk_timeout
            )
        except openai.OpenAIError as exc:
            raise error_from_sdk(exc) from exc
        try:
            result = orjson.loads(raw.content)
        except orjson.JSONDecodeError:
            raise malformed(raw.content) from None
        if not isinstance(result, dict):
            raise malformed(raw.content)
        return result

    async def aclose(self) -> None:
        """Close the aiohttp session, and the SDK client if this adapter created it."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._owns_client:
            await self._client.close()


_END: dict[str, Any] = {}
"""Returned by `_chunk` for `[DONE]`."""


def _chunk(event: str | None, data: bytes, loads: Callable[[bytes], Any]) -> dict[str, Any] | None:
    """The chunk of one frame; None for frames to skip, `_END` for `[DONE]`."""
    if event is not None and event != "message":
        if event == "error":
            raise error_event(data)
        return None
    if data == _DONE:
        return _END
    try:
        chunk = loads(data)
    except ValueError:  # orjson.JSONDecodeError, json's and UnicodeDecodeError all are
        raise malformed(data) from None
    if chunk.__class__ is not dict:
        raise malformed(data)
    error = chunk.get("error")
    if error:
        raise llm_error_for(None, error)
    return chunk


def _finishes(chunk: dict[str, Any]) -> bool:
    """Whether a chunk carries a `finish_reason` (read until one has; never validates)."""
    choices = chunk.get("choices")
    if choices.__class__ is list:
        for choice in choices:  # a plain loop: a generator costs twice as much per chunk
            if choice.__class__ is dict and choice.get("finish_reason"):
                return True
    return False


async def _read_sdk(reads: AsyncIterator[bytes], seconds: float) -> bytes:
    try:
        return await anext(reads, b"")
    except httpx2.TimeoutException:
        raise stream_timeout(seconds, True) from None
    except httpx2.TransportError as exc:
        raise stream_broken(f"the stream broke: {exc!r}") from exc


def _sdk_kwargs(body: Mapping[str, Any]) -> dict[str, Any]:
    """`create()` arguments that send `body` unchanged: everything but model/messages
    travels as `extra_body`, so keys the SDK does not know still reach the provider."""
    rest = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
    return {"model": body.get("model"), "messages": body.get("messages"), "extra_body": rest}
