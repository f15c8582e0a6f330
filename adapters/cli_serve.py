"""`loopwright serve`: the OpenAI-compatible server on uvicorn (uvloop + httptools).

With no API key configured the server answers everyone as the default tenant, so it only
listens on a loopback address unless told `--insecure`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "cmd_serve"]


def add_parser(sub: Any) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve agents over an OpenAI-compatible HTTP API",
        description="Serve `POST /v1/chat/completions` (the `model` names an agent) and the "
        "agents API. Keys: --keys FILE or LOOPWRIGHT_API_KEYS=tenant:key,...",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serve.add_argument(
        "--keys",
        type=Path,
        default=None,
        metavar="FILE",
        help="API keys, one `tenant key` or `tenant sha256:HEX` per line",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback address with no API key configured",
    )
    serve.add_argument(
        "--busy-policy",
        choices=["queue", "reject"],
        default="queue",
        help="a turn for an agent already in a turn waits or is refused",
    )
    serve.add_argument("--busy-wait", type=float, default=30.0, metavar="SECONDS")
    serve.add_argument(
        "--turn-window",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="an identical turn within this window is replayed, not re-run",
    )
    serve.add_argument("--max-input-chars", type=int, default=32_000, metavar="N")
    serve.add_argument(
        "--allow-tools",
        action="append",
        default=[],
        metavar="MODULE",
        help="a tool module API clients may give agents (repeatable)",
    )
    serve.add_argument(
        "--ping",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="keep-alive comment interval while no token flows",
    )
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from .http.auth import KeyConfigError, Keyring, is_loopback

    try:
        if args.keys is not None:
            keyring = Keyring.from_file(args.keys)
        else:
            keyring = Keyring.from_env_value(os.environ.get("LOOPWRIGHT_API_KEYS", ""))
    except KeyConfigError as err:
        print(f"loopwright serve: {err}", file=sys.stderr)
        return 2
    if keyring.open and not is_loopback(args.host) and not args.insecure:
        print(
            f"loopwright serve: refusing to listen on {args.host} with no API key configured; "
            "set LOOPWRIGHT_API_KEYS or --keys, or pass --insecure",
            file=sys.stderr,
        )
        return 2
    try:
        import uvloop

        uvloop.run(_serve(args, keyring))
    except ImportError:  # no uvloop on this platform: the default loop works, only slower
        asyncio.run(_serve(args, keyring))
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(args: argparse.Namespace, keyring: Any) -> None:
    from .http.app import create_app
    from .http.chat import ServerOptions
    from .http.serving import serving
    from .wiring import App

    options = ServerOptions(
        turn_window_s=args.turn_window,
        busy_policy=args.busy_policy,
        busy_wait_s=args.busy_wait,
        ping_s=args.ping,
        max_input_chars=args.max_input_chars,
        tool_modules=tuple(args.allow_tools),
    )
    async with await App.open() as app:
        asgi = create_app(app, keyring=keyring, options=options, lag_probe=_lag_probe_on())
        async with serving(asgi, host=args.host, port=args.port) as server:
            print(f"loopwright serving on {server.root}/v1", file=sys.stderr, flush=True)
            await server.wait()


def _lag_probe_on() -> bool:
    return os.environ.get("LOOPWRIGHT_LAG_PROBE", "") not in ("", "0", "false")
