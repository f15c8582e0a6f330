"""The ASGI application: OpenAI-compatible chat completions plus the agents API.

Routes are registered where real clients send them: SDKs append `/chat/completions` to the
base URL they are given, and two documented setups give a URL that already ends in it, so
`/v1/chat/completions/chat/completions` (and LiveKit's prewarm `GET …/chat/completions/models`)
are served too. Streaming is decided by the body's `stream`, never by `Accept`: both SDKs send
`Accept: application/json` while streaming.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .agents_api import agent_routes
from .auth import Keyring
from .chat import ChatService, ServerOptions, Turn, now_s
from .errors import ApiError, error_response, json_response
from .lag import LagProbe
from .request import parse_chat_request
from .sse import CompletionError, collect_completion, encode_stream
from .streaming import SSEResponse

if TYPE_CHECKING:
    from ..wiring import App

__all__ = ["CHAT_PATHS", "MODEL_PATHS", "create_app"]

_log = logging.getLogger(__name__)

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions", "/v1/chat/completions/chat/completions")
MODEL_PATHS = ("/v1/models", "/models", "/v1/chat/completions/models")

Endpoint = Callable[[Request], Awaitable[Response]]


class Server:
    """What every endpoint needs: the app, the chat service and the keyring."""

    def __init__(self, app: App, keyring: Keyring, options: ServerOptions) -> None:
        self.app = app
        self.keyring = keyring
        self.chat = ChatService(app, options)

    def tenant(self, request: Request) -> str:
        """The tenant of the request's key. Raises: AuthError."""
        return self.keyring.tenant(request.headers.get("authorization"))


def create_app(
    app: App,
    *,
    keyring: Keyring | None = None,
    options: ServerOptions | None = None,
    lag_probe: bool = False,
) -> Starlette:
    """The ASGI app over an open `App` (the caller opens and closes it). `lag_probe` serves
    the event loop's lag at `GET /_lag` (benchmarks)."""
    server = Server(app, keyring or Keyring({}), options or ServerOptions())
    chat = _guard(server, _chat, not_found="model_not_found")
    probe = LagProbe() if lag_probe else None
    routes = [
        *(Route(path, chat, methods=["POST"]) for path in CHAT_PATHS),
        *(Route(path, _guard(server, _models), methods=["GET"]) for path in MODEL_PATHS),
        Route("/healthz", _healthz, methods=["GET"]),
        *agent_routes(server),
    ]
    if probe is not None:

        async def lag(_request: Request) -> Response:
            return json_response(probe.read())

        routes.append(Route("/_lag", lag, methods=["GET"]))

    @contextlib.asynccontextmanager
    async def lifespan(_asgi: Starlette) -> AsyncIterator[None]:
        if probe is not None:
            probe.start()
        try:
            yield
        finally:
            if probe is not None:
                await probe.stop()

    asgi = _Starlette(_direct(chat), routes=routes, lifespan=lifespan)
    asgi.state.server = server
    return asgi


class _Starlette(Starlette):
    """Starlette, with `POST` on a chat path served without its middleware and router: the
    two middleware layers would wrap the `send` of every frame of every stream. The routes
    stay registered (a request with a `root_path` goes the usual way)."""

    def __init__(self, chat: ASGIApp, **kw: Any) -> None:
        super().__init__(**kw)
        self._chat = chat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in CHAT_PATHS
            and not scope.get("root_path")
        ):
            scope["app"] = self
            await self._chat(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def _direct(endpoint: Endpoint) -> ASGIApp:
    """An endpoint as a bare ASGI app (it catches its own errors: see `_guard`)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await endpoint(Request(scope, receive))
        await response(scope, receive, send)

    return app


def _guard(
    server: Server,
    endpoint: Callable[[Server, Request], Awaitable[Response]],
    *,
    not_found: str = "agent_not_found",
) -> Endpoint:
    """`endpoint` with every error before the headers as a typed JSON body; an unknown agent
    is `not_found` (`model_not_found` where the agent is the request's `model`)."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(server, request)
        except Exception as err:
            return error_response(err, not_found_code=not_found)

    return run


async def _healthz(_request: Request) -> Response:
    return json_response({"status": "ok"})


async def _models(server: Server, request: Request) -> Response:
    tenant = server.tenant(request)
    agents = await server.app.store.list_agents(tenant=tenant)
    data = [
        {"id": a.name, "object": "model", "created": int(a.created_at), "owned_by": "loopwright"}
        for a in agents
    ]
    return json_response({"object": "list", "data": data})


async def _chat(server: Server, request: Request) -> Response:
    tenant = server.tenant(request)
    req = parse_chat_request(await request.body())
    turn = await server.chat.open(tenant, request.headers, req)
    completion_id = f"chatcmpl-{turn.run_id}"
    if not req.stream:
        return await _complete(server, turn, req.model, completion_id)
    frames = encode_stream(
        turn.events(),
        model=req.model,
        include_usage=req.include_usage,
        id=completion_id,
        created=now_s(),
    )

    async def on_close(disconnected: bool) -> None:
        await server.chat.close(turn, disconnected=disconnected)

    return _SSE(frames, ping_s=server.chat.options.ping_s, on_close=on_close)


async def _complete(server: Server, turn: Turn, model: str, completion_id: str) -> Response:
    try:
        body = await collect_completion(
            turn.events(), model=model, id=completion_id, created=now_s()
        )
    except CompletionError as err:
        return error_response(err)
    finally:
        await server.chat.close(turn, disconnected=False)
    return json_response(body)


class _SSE(Response):
    """Adapts `SSEResponse` to the `Response` type Starlette's routes expect."""

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        *,
        ping_s: float,
        on_close: Callable[[bool], Awaitable[None]],
    ) -> None:
        self._sse = SSEResponse(frames, ping_s=ping_s, on_close=on_close)

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await self._sse(scope, receive, send)


__all__ += ["ApiError", "Server"]
