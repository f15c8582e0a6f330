"""Errors before the response headers: an OpenAI-shaped JSON body with a proper status.

Every typed error the server knows maps to a status and a stable `code`; anything else is a
500 whose body says only that the server log has the details.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from loopwright.workflows.agent.errors import AgentExistsError, AgentNotFoundError

from ..locks import AgentBusyError
from .auth import AuthError
from .chat import TurnTooLargeError
from .request import BadRequestError
from .sse import CompletionError

__all__ = ["ApiError", "error_response", "json_response"]

_log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered before any byte of a body went out."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.type = type
        self.param = param
        self.headers = dict(headers or {})

    def response(self) -> Response:
        body = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        return json_response(body, status=self.status, headers=self.headers)


def json_response(
    body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


_NO_RETRY = {"x-should-retry": "false"}
"""The turn started (its input is stored, tools may have run): an automatic retry of the SDK
would start another; the client decides instead."""


def as_api_error(err: Exception, *, not_found_code: str = "agent_not_found") -> ApiError:
    """The response for a typed error (unknown ones become a logged 500)."""
    if isinstance(err, ApiError):
        return err
    if isinstance(err, BadRequestError):
        return ApiError(400, str(err), code=err.code, param=err.param)
    if isinstance(err, TurnTooLargeError):
        return ApiError(400, str(err), code=err.code, param=err.param)
    if isinstance(err, AuthError):
        return ApiError(401, str(err), code=err.code, type="authentication_error")
    if isinstance(err, AgentNotFoundError):
        return ApiError(404, str(err), code=not_found_code, param="model")
    if isinstance(err, AgentExistsError):
        return ApiError(409, str(err), code="agent_exists", param="name")
    if isinstance(err, AgentBusyError):
        return ApiError(409, str(err), code=err.code, type="conflict_error")
    if isinstance(err, CompletionError):
        return ApiError(err.status, err.message, code=err.code, type=err.type, headers=_NO_RETRY)
    _log.exception("request failed", exc_info=err)
    return ApiError(
        500,
        f"internal error ({type(err).__name__}); the server log has details",
        code="internal_error",
        type="server_error",
        headers=_NO_RETRY,
    )


def error_response(err: Exception, *, not_found_code: str = "agent_not_found") -> Response:
    return as_api_error(err, not_found_code=not_found_code).response()
