"""From HTTP failures to the SDK's typed exceptions, and from those to `LLMError`.

Both transports end here, so an error reads the same whichever one produced it: an error
status becomes the `openai` exception the SDK itself would raise (`RateLimitError`, ...),
which is then classified into the `LLMError` taxonomy and raised `from` it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import httpx2
import openai

from loopwright.engine.errors import LLMError
from loopwright.engine.llm_errors import llm_error, llm_error_for

_STATUS_TYPES: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


def status_exception(
    status: int, headers: Iterable[tuple[str, str]], body: bytes, url: str
) -> openai.APIStatusError:
    """The SDK exception for an error response, with the message the SDK would give it."""
    request = httpx2.Request("POST", url)
    response = httpx2.Response(status, headers=list(headers), content=body, request=request)
    message = f"Error code: {status}"
    data: Any = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(data)
    except ValueError:
        pass
    else:
        if isinstance(data, Mapping):
            data = data.get("error", data)
            text = data.get("message") if isinstance(data, Mapping) else None
            if isinstance(text, str) and text:
                message += f" - {text}"
    exc_type = _STATUS_TYPES.get(status)
    if exc_type is None:
        exc_type = openai.InternalServerError if status >= 500 else openai.APIStatusError
    return exc_type(message, response=response, body=data)


def connection_exception(url: str, cause: BaseException) -> openai.APIConnectionError:
    """The SDK exception for a connection that could not be made."""
    return openai.APIConnectionError(message=f"Connection error: {cause}", request=_request(url))


def timeout_exception(url: str) -> openai.APITimeoutError:
    """The SDK exception for a request that timed out."""
    return openai.APITimeoutError(request=_request(url))


def _request(url: str) -> httpx2.Request:
    return httpx2.Request("POST", url)


def error_from_sdk(exc: openai.OpenAIError) -> LLMError:
    """Classify an SDK exception (raise the result `from exc`)."""
    if isinstance(exc, openai.APIStatusError):
        return llm_error_for(exc.status_code, exc.body, dict(exc.response.headers))
    if isinstance(exc, openai.APITimeoutError):
        return llm_error(
            "timeout", f"no response within the timeout ({exc.request.url})", retryable=True
        )
    if isinstance(exc, openai.APIConnectionError):
        return llm_error(
            "server_error",
            f"cannot reach {exc.request.url}: {exc.__cause__ or exc}",
            retryable=True,
        )
    return llm_error("stream_error", str(exc), retryable=False)


def stream_broken(detail: str) -> LLMError:
    """The stream broke after it started (reset, truncated body, read failure)."""
    return llm_error("stream_error", detail, retryable=True)


def truncated() -> LLMError:
    """The body ended without `[DONE]` and without any `finish_reason`: it was cut short."""
    return llm_error(
        "stream_error",
        "the body ended without `data: [DONE]` and without a finish_reason: the stream was "
        "cut short, or was not an SSE stream",
        retryable=True,
    )


def stream_timeout(seconds: float | None, started: bool) -> LLMError:
    """No byte (or no next byte) within the timeout."""
    what = "next chunk" if started else "first byte"
    return llm_error("timeout", f"no {what} within {seconds}s", retryable=True)


def malformed(data: bytes) -> LLMError:
    """A `data:` frame that is not a JSON object (or not UTF-8)."""
    return llm_error("stream_error", f"malformed chunk {data[:80]!r}", retryable=True)


def error_event(data: bytes) -> LLMError:
    """An `event: error` frame (Groq): classify its `error` object."""
    try:
        payload: Any = json.loads(data)
    except ValueError:
        payload = {"message": data.decode("utf-8", "replace")}
    if isinstance(payload, Mapping):
        payload = payload.get("error", payload)
    return llm_error_for(None, payload)
