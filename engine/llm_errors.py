"""The LLM error taxonomy: HTTP statuses and provider error objects to `LLMError`.

Shared by the scripted LLM, the fake server and the OpenAI adapter, so a fault reads the same
from each. Pure: no I/O, no `openai` import.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

from .errors import LLMError


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    lower = {k.lower(): v for k, v in headers.items()}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lower.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / divisor)
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return max(0.0, float(email.utils.mktime_tz(parsed) - time.time()))
    return None


_STATUS_CODES: dict[int, tuple[str, bool]] = {
    400: ("bad_request", False),
    401: ("auth", False),
    403: ("auth", False),
    404: ("bad_request", False),
    408: ("timeout", True),
    409: ("server_error", True),
    413: ("context_overflow", False),
    422: ("bad_request", False),
    429: ("rate_limited", True),
}
_OVERFLOW_HINTS = ("context_length_exceeded", "maximum context length", "context window")
_FIXES = {
    "auth": "check the API key (OPENAI_API_KEY) and the base URL",
    "context_overflow": "shorten the context (lower message_buffer_limit) or use a larger model",
    "bad_request": "fix the request (model name, tools, parameters)",
    "rate_limited": "wait and retry, or lower the request rate",
    "server_error": "the provider failed; retry later",
    "timeout": "retry, or raise the timeout",
    "stream_error": "the stream broke; retry the request",
}


def llm_error(
    code: str,
    detail: str,
    *,
    status: int | None = None,
    retryable: bool = False,
    retry_after: float | None = None,
) -> LLMError:
    """An `LLMError` whose message ends with how to fix the problem."""
    where = f"HTTP {status}: " if status else ""
    return LLMError(
        code,
        f"LLM request failed ({code}): {where}{detail} — {_FIXES[code]}",
        retryable=retryable,
        retry_after=retry_after,
        status=status,
    )


def llm_error_for(
    status: int | None,
    error: Any = None,
    headers: Mapping[str, str] | None = None,
) -> LLMError:
    """Classify an HTTP status and/or provider error object into the `LLMError` taxonomy.

    `status` None means the error arrived inside a 200 stream: its own `status_code` or an
    integer `code` is used when present, else the error is a `stream_error`.
    """
    err = error if isinstance(error, Mapping) else {"message": str(error or "")}
    message = str(err.get("message") or err.get("code") or "no error message")
    code_field = err.get("code")
    if status is None:
        embedded = err.get("status_code", code_field)
        status_hint = embedded if isinstance(embedded, int) else None
    else:
        status_hint = status
    lowered = f"{code_field} {err.get('type')} {message}".lower()
    if any(hint in lowered for hint in _OVERFLOW_HINTS):
        code, retryable = "context_overflow", False
    elif code_field == "insufficient_quota":
        code, retryable = "rate_limited", False
    elif status_hint is None:
        server = err.get("type") in ("server_error", "overloaded_error")
        code, retryable = ("server_error" if server else "stream_error"), True
    elif status_hint >= 500:
        code, retryable = "server_error", True
    else:
        code, retryable = _STATUS_CODES.get(status_hint, ("bad_request", False))
    retry_after = retry_after_seconds(headers) if headers else None
    return llm_error(
        code, message, status=status_hint, retryable=retryable, retry_after=retry_after
    )
