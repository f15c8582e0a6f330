"""The chat endpoint is answered straight from the ASGI app, or through Starlette's router
when the server runs under a `root_path`; both answer alike (raw ASGI calls, as uvicorn's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from loopwright.adapters.http.app import create_app
from loopwright.adapters.wiring import App, Settings


async def call(asgi: Any, method: str, path: str, body: bytes, root_path: str = "") -> Any:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": root_path + path,
        "raw_path": (root_path + path).encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asgi(scope, receive, send)
    status = sent[0]["status"]
    content = b"".join(m.get("body", b"") for m in sent[1:])
    return status, orjson.loads(content)


@pytest.mark.parametrize("root_path", ["", "/api"])
async def test_a_chat_post_is_answered_with_or_without_a_root_path(
    tmp_path: Path, root_path: str
) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", api_key="x")
    async with await App.open(settings) as app:
        asgi = create_app(app)
        body = orjson.dumps({"model": "nobody", "messages": [{"role": "user", "content": "hi"}]})
        for path in ("/v1/chat/completions", "/chat/completions"):
            status, payload = await call(asgi, "POST", path, body, root_path)
            assert status == 404
            assert payload["error"]["code"] == "model_not_found"
        status, payload = await call(asgi, "POST", "/v1/chat/completions", b"{", root_path)
        assert status == 400
        assert payload["error"]["code"] == "invalid_json"
        status, payload = await call(asgi, "GET", "/healthz", b"", root_path)
        assert (status, payload) == (200, {"status": "ok"})
