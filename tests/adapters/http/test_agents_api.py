"""The agents API: create/get/list/delete agents and templates, blocks, messages (paged,
newest first), runs and cancel; API keys and tenants on every route."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from loopwright.adapters.http.auth import AuthError, KeyConfigError, Keyring, digest, is_loopback
from loopwright.engine.testing.chunks import Delay, Response, content_chunk, role_chunk, text_reply

from .live import Live, chat_body, live_server, post, request

KEYS = Keyring.from_pairs([("acme", "key-acme"), ("globex", f"sha256:{digest('key-globex')}")])
ACME = {"authorization": "Bearer key-acme"}
GLOBEX = {"authorization": "Bearer key-globex"}


async def create(live: Live, body: dict[str, Any], headers: dict[str, str] = ACME) -> Any:
    reply = await request("POST", f"{live.base_url}/agents", body, headers=headers)
    assert reply.status == 201, reply.body
    return reply.json()


async def test_agents_crud_blocks_and_messages(tmp_path: Path) -> None:
    script = [text_reply(f"Reply {n}.") for n in range(5)]
    async with live_server(tmp_path, script, keyring=KEYS) as live:
        made = await create(
            live,
            {
                "name": "support",
                "model": "scripted",
                "system": "Be kind.",
                "blocks": [{"label": "human", "value": "Name: Sam", "limit": 100}],
            },
        )
        assert made["name"] == "support"
        assert made["template"] is False
        got = (await request("GET", f"{live.base_url}/agents/support", headers=ACME)).json()
        assert got["id"] == made["id"]
        listing = (await request("GET", f"{live.base_url}/agents", headers=ACME)).json()
        assert [a["name"] for a in listing["data"]] == ["support"]

        blocks = (
            await request("GET", f"{live.base_url}/agents/support/blocks", headers=ACME)
        ).json()
        assert [(b["label"], b["value"]) for b in blocks["data"]] == [("human", "Name: Sam")]
        put = await request(
            "PUT",
            f"{live.base_url}/agents/support/blocks/human",
            {"value": "Name: Samantha"},
            headers=ACME,
        )
        assert put.json()["value"] == "Name: Samantha"
        too_long = await request(
            "PUT",
            f"{live.base_url}/agents/support/blocks/human",
            {"value": "x" * 101},
            headers=ACME,
        )
        assert too_long.status == 400
        assert too_long.json()["error"]["code"] == "block_too_long"

        history: list[dict[str, Any]] = []
        for n in range(5):
            history.append({"role": "user", "content": f"question {n}"})
            (
                await post(
                    f"{live.base_url}/chat/completions",
                    chat_body(history, model="support"),
                    headers=ACME,
                )
            ).stream()
            history.append({"role": "assistant", "content": f"Reply {n}."})
        # The memory edit reached the model: the next system prompt shows the new block.
        assert "Name: Samantha" in live.llm.requests[-1].body["messages"][0]["content"]

        seen: list[str] = []
        cursor = None
        while True:
            query = f"?limit=3&before={cursor}" if cursor else "?limit=3"
            page = (
                await request(
                    "GET", f"{live.base_url}/agents/support/messages{query}", headers=ACME
                )
            ).json()
            seen += [m["content"] for m in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        expected = [m["content"] for m in history]
        assert seen == list(reversed(expected))

        runs = (await request("GET", f"{live.base_url}/agents/support/runs", headers=ACME)).json()
        assert len(runs["data"]) == 5
        assert {r["stop_reason"] for r in runs["data"]} == {"final"}
        one = await request("GET", f"{live.base_url}/runs/{runs['data'][0]['id']}", headers=ACME)
        assert one.json()["status"] == "finished"

        deleted = await request("DELETE", f"{live.base_url}/agents/support", headers=ACME)
        assert deleted.json()["deleted"] is True
        gone = await request("GET", f"{live.base_url}/agents/support", headers=ACME)
        assert gone.status == 404
        assert gone.json()["error"]["code"] == "agent_not_found"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"model": "x"}, "invalid_body"),
        ({"name": 3}, "invalid_body"),
        ({"name": "a~b"}, "invalid_name"),
        ({"name": "ok", "blocks": [{"label": "h", "value": "xx", "limit": 1}]}, "block_too_long"),
        ({"name": "ok", "workflow": "no_such_workflow"}, "invalid_agent"),
        ({"name": "ok", "workflow": "/etc/passwd"}, "invalid_agent"),
        ({"name": "ok", "workflow": "mine.toml"}, "invalid_agent"),
        ({"name": "ok", "tools": ["os"]}, "invalid_agent"),
        ({"name": "ok", "params": {"nope": 1}}, "invalid_agent"),
    ],
)
async def test_bad_agent_bodies_are_typed_400s(
    tmp_path: Path, body: dict[str, Any], code: str
) -> None:
    async with live_server(tmp_path, [], keyring=KEYS) as live:
        reply = await request("POST", f"{live.base_url}/agents", body, headers=ACME)
        assert reply.status == 400, reply.body
        assert reply.json()["error"]["code"] == code


async def test_a_taken_name_is_409_but_another_tenant_may_use_it(tmp_path: Path) -> None:
    async with live_server(tmp_path, [], keyring=KEYS) as live:
        await create(live, {"name": "support", "model": "scripted"})
        again = await request("POST", f"{live.base_url}/agents", {"name": "support"}, headers=ACME)
        assert again.status == 409
        assert again.json()["error"]["code"] == "agent_exists"
        await create(live, {"name": "support", "model": "scripted"}, headers=GLOBEX)


async def test_keys_are_required_and_checked(tmp_path: Path) -> None:
    async with live_server(tmp_path, [], keyring=KEYS) as live:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic x"}):
            for method, path in (
                ("GET", "/agents"),
                ("GET", "/models"),
                ("POST", "/chat/completions"),
            ):
                body = chat_body([{"role": "user", "content": "x"}]) if method == "POST" else None
                reply = await request(method, live.base_url + path, body, headers=headers)
                assert reply.status == 401, (headers, path)
                assert reply.json()["error"]["type"] == "authentication_error"


async def test_another_tenants_agent_is_404_on_every_route(tmp_path: Path) -> None:
    async with live_server(tmp_path, [text_reply("Hi.")], keyring=KEYS) as live:
        made = await create(live, {"name": "secret", "model": "scripted"})
        (
            await post(
                f"{live.base_url}/chat/completions",
                chat_body([{"role": "user", "content": "x"}], model="secret"),
                headers=ACME,
            )
        ).stream()
        runs = (await request("GET", f"{live.base_url}/agents/secret/runs", headers=ACME)).json()
        run_id = runs["data"][0]["id"]
        base = live.base_url
        for ref in ("secret", made["id"]):
            probes: list[tuple[str, str, Any]] = [
                ("GET", f"/agents/{ref}", None),
                ("DELETE", f"/agents/{ref}", None),
                ("GET", f"/agents/{ref}/blocks", None),
                ("PUT", f"/agents/{ref}/blocks/human", {"value": "x"}),
                ("GET", f"/agents/{ref}/messages", None),
                ("GET", f"/agents/{ref}/runs", None),
                (
                    "POST",
                    "/chat/completions",
                    chat_body([{"role": "user", "content": "x"}], model=ref),
                ),
            ]
            for method, path, body in probes:
                reply = await request(method, base + path, body, headers=GLOBEX)
                assert reply.status == 404, (method, path, reply.body)
        for method, path in (("GET", f"/runs/{run_id}"), ("POST", f"/runs/{run_id}/cancel")):
            reply = await request(method, base + path, headers=GLOBEX)
            assert reply.status == 404, (method, path)
        models = (await request("GET", f"{base}/models", headers=GLOBEX)).json()
        assert models["data"] == []
        still = (await request("GET", f"{base}/agents/secret", headers=ACME)).json()
        assert still["name"] == "secret"


async def test_cancel_a_running_turn(tmp_path: Path) -> None:
    slow = Response(
        steps=(
            role_chunk(),
            content_chunk("Let me "),
            Delay(10.0),
            content_chunk("think."),
        )
    )
    async with live_server(tmp_path, [slow], keyring=KEYS) as live:
        await create(live, {"name": "slow", "model": "scripted"})
        url = f"{live.base_url}/chat/completions"
        body = orjson.dumps(chat_body([{"role": "user", "content": "x"}], model="slow"))
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=ACME) as response,
        ):
            seen = b""
            while b"Let me" not in seen:
                seen += await response.content.readline()
            runs = (await request("GET", f"{live.base_url}/agents/slow/runs", headers=ACME)).json()
            run_id = runs["data"][0]["id"]
            cancel = await request("POST", f"{live.base_url}/runs/{run_id}/cancel", headers=ACME)
            assert cancel.status == 202
            rest = await asyncio.wait_for(response.read(), 5)
        assert (seen + rest).rstrip().endswith(b"data: [DONE]")
        record = (await request("GET", f"{live.base_url}/runs/{run_id}", headers=ACME)).json()
        assert record["stop_reason"] == "cancelled"
        again = await request("POST", f"{live.base_url}/runs/{run_id}/cancel", headers=ACME)
        assert again.status == 409


def test_keyring_configuration(tmp_path: Path) -> None:
    ring = Keyring.from_env_value(" a:k1 , b:k2 ")
    assert ring.tenant("Bearer k1") == "a"
    assert ring.tenant("bearer k2") == "b"
    assert "k1" not in repr(ring)  # only digests are kept
    with pytest.raises(AuthError):
        ring.tenant("Bearer k3")
    with pytest.raises(KeyConfigError):
        Keyring.from_env_value("no-colon")
    with pytest.raises(KeyConfigError):
        Keyring.from_pairs([("a", "same"), ("b", "same")])
    with pytest.raises(KeyConfigError):
        Keyring.from_pairs([("a", "sha256:nothex")])
    keys = tmp_path / "keys"
    keys.write_text(f"# tenants\nacme key-acme\nglobex sha256:{digest('g')}  # hashed\n")
    ring = Keyring.from_file(keys)
    assert ring.tenant("Bearer g") == "globex"
    keys.write_text("just-one-field\n")
    with pytest.raises(KeyConfigError, match=":1:"):
        Keyring.from_file(keys)
    assert Keyring({}).tenant(None) == ""
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("")


async def test_only_allowed_tool_modules_can_be_given_over_http(tmp_path: Path) -> None:
    from loopwright.adapters.http.chat import ServerOptions

    options = ServerOptions(tool_modules=("loopwright.adapters.tools.demo",))
    async with live_server(tmp_path, [], keyring=KEYS, options=options) as live:
        made = await create(live, {"name": "w", "tools": ["loopwright.adapters.tools.demo"]})
        assert made["tools"] == ["loopwright.adapters.tools.demo"]
        refused = await request(
            "POST", f"{live.base_url}/agents", {"name": "x", "tools": ["subprocess"]}, headers=ACME
        )
        assert refused.status == 400
        assert refused.json()["error"]["param"] == "tools"
