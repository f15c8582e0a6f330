"""The official `openai` Node.js SDK as a test client, run in a subprocess (tests/node/client.mjs).

`await run_node_client(base_url, model, mode)` makes one chat completion with the real Node SDK
and returns what it got: `{"text", "chunks", "final", "tool_calls", "finish_reason", "error"}`.
Call `require_node()` first: it skips the test locally when Node.js or the installed package is
missing, and fails it when `CI=true` (install with `npm ci --prefix tests/node`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pytest

NODE_DIR = Path(__file__).parent / "node"
CLIENT = NODE_DIR / "client.mjs"
INSTALL = "npm ci --prefix tests/node --no-audit --no-fund"

Mode = Literal["stream", "create_stream", "complete"]


class NodeClientError(RuntimeError):
    """The Node client script broke or hung (an SDK error is a result, not this)."""

    def __init__(self, problem: str, *, returncode: int | None, stderr: str) -> None:
        super().__init__(f"{problem}; stderr:\n{stderr.strip() or '(empty)'}")
        self.returncode = returncode
        self.stderr = stderr


def _problem() -> str | None:
    if shutil.which("node") is None:
        return "Node.js (`node`) is not on PATH"
    if not (NODE_DIR / "node_modules" / "openai" / "package.json").is_file():
        return f"the openai Node package is not installed in {NODE_DIR}"
    return None


def node_available() -> bool:
    """Whether `node` is on PATH and the `openai` package is installed in tests/node."""
    return _problem() is None


def require_node() -> None:
    """Skip the test when the Node client cannot run; fail it instead when `CI=true`."""
    problem = _problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{problem}; CI=true requires the Node client (.ci/run must run `{INSTALL}`)")
    pytest.skip(f"{problem}; run `{INSTALL}` to run this test")


def _child_env(
    body: Mapping[str, Any] | None, headers: Mapping[str, str] | None, time_limit: float
) -> dict[str, str]:
    # OPENAI_* variables of the caller (a base URL, a log level printing to stdout) would
    # change what the SDK does; the harness passes everything it means explicitly.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["LW_BODY"] = json.dumps(dict(body or {}))
    env["LW_HEADERS"] = json.dumps(dict(headers or {}))
    # The SDK gives up first, so a hanging server shows as an SDK timeout in `error`,
    # not as a killed process.
    env["LW_TIMEOUT_MS"] = str(int(time_limit * 800))
    env["LW_MAX_RETRIES"] = "0"
    return env


async def run_node_client(
    base_url: str,
    model: str,
    mode: Mode | str,
    *,
    body: Mapping[str, Any] | None = None,
    api_key: str = "test",
    headers: Mapping[str, str] | None = None,
    time_limit: float = 20.0,
) -> dict[str, Any]:
    """One chat completion by the Node SDK: the parsed JSON the script printed.

    Args:
        base_url: The OpenAI-compatible base URL (the SDK appends `/chat/completions`).
        model: The request's `model`.
        mode: `stream` (`.stream()` + `finalChatCompletion()`), `create_stream`, `complete`.
        body: Merged into the request body (messages, tools, stream_options, ...).
        api_key: Sent as `Authorization: Bearer`.
        headers: Extra request headers.
        time_limit: Seconds for the whole run (the SDK's own timeout is 80 % of it).

    Returns:
        `{"text", "chunks", "final", "tool_calls", "finish_reason", "error"}`; `error` is
        None or `{"name", "message", "status", "code", "type"}` of the SDK's error.

    Raises:
        NodeClientError: The script exited non-zero, hung, or printed something not JSON.
    """
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(CLIENT),
        base_url,
        model,
        mode,
        api_key,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_child_env(body, headers, time_limit),
        cwd=NODE_DIR,
    )
    try:
        async with asyncio.timeout(time_limit):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
        raise NodeClientError(
            f"the Node client did not finish within {time_limit} s",
            returncode=None,
            stderr=err.decode(errors="replace"),
        ) from None
    stderr = err.decode(errors="replace")
    if proc.returncode != 0:
        raise NodeClientError(
            f"the Node client exited with {proc.returncode}",
            returncode=proc.returncode,
            stderr=stderr,
        )
    try:
        result: dict[str, Any] = json.loads(out)
    except ValueError as exc:
        raise NodeClientError(
            f"the Node client printed no JSON object: {out[:200]!r}", returncode=0, stderr=stderr
        ) from exc
    return result
