"""The live server against its OpenAPI document, `schemas/openapi.json`, with schemathesis.

The document must be valid OpenAPI 3.1 and name exactly the routes the app serves. Then every
operation is fuzzed on a live server (uvicorn on loopback, a real SQLite file, the fake LLM)
with requests the document calls valid and with requests it calls invalid: no answer may be a
5xx, every answer must match the document (status code, content type, body), and a request the
document calls invalid must be refused (the document is exactly as lenient as the server). A
streamed answer must also pass the SSE linter, each chunk matching the document's schema.
Generated names are steered towards what exists (agents of two tenants, a template, runs,
messages, good and bad keys) so that the fuzzer gets past 401 and 404.

The server runs in the test's event loop; schemathesis is synchronous, so Hypothesis drives it
from a worker thread (`asyncio.to_thread`) while the loop serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import jsonschema
import orjson
import pytest
import schemathesis
from attrs import frozen
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    ensure_resource_availability,
    ignored_auth,
    positive_data_acceptance,
    use_after_free,
)
from starlette.applications import Starlette
from starlette.routing import Route

from loopwright.adapters.http.app import create_app
from loopwright.adapters.http.auth import Keyring
from loopwright.adapters.http.chat import ServerOptions
from loopwright.adapters.llm.fake_server import demo_responder
from loopwright.adapters.wiring import App, Settings
from loopwright.engine.testing.chunks import Delay, Response, content_chunk, role_chunk
from loopwright.schemas import Block

from .lint import lint_stream
from .live import Live, agent, chat_body, live_server, post

if TYPE_CHECKING:
    from schemathesis import APIOperation, Case

    Operation = APIOperation[Any, Any, Any, Any]
    AnyCase = Case[Any]

DOCUMENT = Path(__file__).resolve().parents[3] / "schemas" / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(DOCUMENT)
RAW: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})
PRIVATE_PATHS = frozenset({"/_lag"})
"""Served only with `lag_probe` (benchmarks): not part of the public API."""

KEYS = Keyring.from_pairs([("acme", "key-acme"), ("globex", "key-globex")])
ACME = "Bearer key-acme"
AUTHORIZATIONS = (ACME,) * 7 + ("Bearer key-globex", None, "Bearer nope", "Basic eA==")
"""Mostly the tenant that owns the agents; sometimes another tenant, none or a bad key."""
HOLD = "hold the line"
"""A user message the fake LLM answers slowly, so that a run is still going when cancelled."""
SAFE_TOOLS = ("loopwright.adapters.tools.demo", "no_such_module_for_openapi_tests")
OPTIONS = ServerOptions(tool_modules=SAFE_TOOLS)  # both allowed: one loads, one does not
"""`tools` names modules the server imports: the fuzzer must never name arbitrary ones."""
# Checks this test cannot satisfy by design: the fuzzer names missing agents and runs on
# purpose (valid requests answered 404), and the stateful checks re-send requests that the
# server rightly answers differently the second time (a deleted agent, a cancelled run).
EXCLUDED: list[CheckFunction] = [
    positive_data_acceptance,
    use_after_free,
    ensure_resource_availability,
    ignored_auth,
]


def _responder(body: Mapping[str, Any]) -> Response:
    messages = body.get("messages") or [{}]
    if messages[-1].get("content") == HOLD:
        return Response(steps=(role_chunk(), content_chunk("Hold on"), Delay(30.0)))
    return demo_responder(body)


# ---------------------------------------------------------------------------------------------
# The document itself


def _operations() -> list[Operation]:
    operations = []
    for result in SCHEMA.get_all_operations():
        assert isinstance(result, Ok), result  # every operation of the document loads
        operations.append(result.ok())
    return operations


def test_document_is_valid_openapi_3_1() -> None:
    SCHEMA.validate()  # the OpenAPI 3.1 meta-schema
    assert RAW["openapi"].startswith("3.1.")
    assert RAW["info"]["version"] == version("loopwright")
    for name, schema in RAW["components"]["schemas"].items():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as err:
            raise AssertionError(f"components.schemas.{name}: {err.message}") from err
    ids = [op.definition.raw["operationId"] for op in _operations()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_an_invalid_document_is_rejected() -> None:
    broken = copy.deepcopy(RAW)
    broken["paths"]["/healthz"]["get"]["responses"] = {"200": {"content": {}}}  # no description
    with pytest.raises(Exception, match="description"):
        schemathesis.openapi.from_dict(broken).validate()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_every_reference_resolves_and_every_component_is_used() -> None:
    refs = set(_refs(RAW))
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = RAW
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]
    for kind, members in RAW["components"].items():
        if kind == "securitySchemes":
            continue
        unused = {f"#/components/{kind}/{name}" for name in members} - refs
        assert not unused, f"components never referenced: {sorted(unused)}"


def _served(asgi: Starlette) -> set[tuple[str, str]]:
    served = set()
    for route in asgi.routes:
        assert isinstance(route, Route), route
        if route.path in PRIVATE_PATHS:
            continue
        # Starlette answers HEAD wherever GET is served; the document lists GET only.
        served |= {(m.lower(), route.path) for m in route.methods or () if m != "HEAD"}
    return served


async def test_the_document_names_exactly_the_routes_the_app_serves(tmp_path: Path) -> None:
    documented = {
        (method, path)
        for path, item in RAW["paths"].items()
        for method in item
        if method in METHODS
    }
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", api_key="x")
    async with await App.open(settings) as app:
        served = _served(create_app(app, keyring=KEYS, lag_probe=True))
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


# ---------------------------------------------------------------------------------------------
# The live server against the document


@frozen(kw_only=True)
class World:
    """What exists on the server, for steering generated names towards it."""

    root: str
    agents: tuple[str, ...]
    """Names and ids of agents, of the fuzzing tenant and of the other one."""
    runs: tuple[str, ...]
    messages: tuple[str, ...]
    labels: tuple[str, ...]


AGENTS = (
    agent("ava", tenant="acme", tools=("loopwright.adapters.tools.demo",)),
    agent("tpl", tenant="acme", is_template=True),
    agent("hal", tenant="acme"),
    agent("gina", tenant="globex"),
)
BLOCKS = (Block(label="human", value="Name: Sam", limit=200),)


async def _turn(live: Live, model: str, key: str, text: str = "Hello") -> None:
    body = chat_body([{"role": "user", "content": text}], model=model, stream=False)
    reply = await post(f"{live.root}/v1/chat/completions", body, headers={"authorization": key})
    assert reply.status == 200, reply.body


async def _world(live: Live, held: str | None) -> World:
    await _turn(live, "ava", ACME)
    await _turn(live, "gina", "Bearer key-globex")
    store = live.app.store
    runs = [r.id for a in ("agent-ava", "agent-gina") for r in await store.list_runs(key=a)]
    messages = [m.id for a in ("agent-ava", "agent-gina") for m in await store.list_messages(a)]
    names = [n for a in AGENTS for n in (a.name, a.id)]
    return World(
        root=live.root,
        agents=(*names, "tpl~0000"),
        runs=(*runs, *([held] if held else [])),
        messages=tuple(messages),
        labels=("human", "persona"),
    )


@contextlib.asynccontextmanager
async def _held_run(live: Live) -> AsyncIterator[str]:
    """A streamed turn of `hal` that stays running (the fake LLM holds it) until the end."""
    url = f"{live.root}/v1/chat/completions"
    body = orjson.dumps(chat_body([{"role": "user", "content": HOLD}], model="hal"))
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers={"authorization": ACME}) as response,
    ):
        first = orjson.loads((await response.content.readline()).removeprefix(b"data: "))
        run_id = first["id"].removeprefix("chatcmpl-")
        while b"Hold on" not in await response.content.readline():
            pass
        # The run's record is written alongside its first states, not before the first token.
        async with asyncio.timeout(10):
            while await live.app.store.load(run_id) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        yield run_id


def _steer(case: AnyCase, data: st.DataObject, world: World) -> None:
    """Point names at things that exist, often; keep generated values otherwise.

    Containers are replaced, never edited in place: schemathesis then checks them again
    before the call, so a negative case that steering made valid is known as positive."""
    headers = case.headers.copy()
    headers.pop("Authorization", None)
    authorization = data.draw(st.sampled_from(AUTHORIZATIONS), label="authorization")
    if authorization is not None:
        headers["Authorization"] = authorization
    case.headers = headers
    pools = {"agent": world.agents, "run": world.runs, "label": world.labels}
    case.path_parameters = {
        name: _maybe(data, pools[name], value, name) if isinstance(value, str) else value
        for name, value in case.path_parameters.items()
    }
    if isinstance(case.query.get("before"), str):
        before = _maybe(data, world.messages, case.query["before"], "before")
        case.query = {**case.query, "before": before}
    if isinstance(case.body, dict):
        path = case.operation.path
        steer = _steer_agent if path == "/v1/agents" else _steer_chat if "chat" in path else None
        if steer is not None:
            case.body = steer(dict(case.body), data)


def _maybe(data: st.DataObject, pool: tuple[str, ...], generated: str, label: str) -> str:
    # Hypothesis prefers (and shrinks towards) the first choices: the things that exist.
    return data.draw(st.sampled_from((*pool, generated)), label=label)


def _steer_chat(body: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    if isinstance(body.get("model"), str):
        body["model"] = _maybe(data, ("ava", "ava", "tpl", "gina"), body["model"], "model")
    if "stream" not in body and data.draw(st.booleans(), label="stream"):
        body["stream"] = True  # the generator leaves optional fields out half the time
    return body


def _steer_agent(body: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    if isinstance(body.get("name"), str):
        body["name"] = _maybe(data, ("ava",), body["name"], "name")
    if isinstance(body.get("tools"), list):
        # Creating an agent imports its `tools` modules: never let the fuzzer pick them.
        names = list(data.draw(st.permutations(SAFE_TOOLS), label="tools"))
        tools = []
        for tool in body["tools"]:
            if not isinstance(tool, str):
                tools.append(tool)  # a negative case's non-string stays
            elif names:
                tools.append(names.pop())
        body["tools"] = tools
    workflow = body.get("workflow")
    if isinstance(workflow, str) and ("/" in workflow or "." in workflow):
        body["workflow"] = "low_latency_agent"  # a path would read any file on the server
    return body


def _check_stream(case: AnyCase, raw: bytes) -> None:
    body = case.body if isinstance(case.body, dict) else {}
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    lint_stream(raw, include_usage=include_usage)


def _exchange(case: AnyCase, root: str) -> int:
    """Send `case`; its answer must match the document (and lint clean if streamed)."""
    response = case.call(base_url=root, timeout=60)
    case.validate_response(response, excluded_checks=EXCLUDED)
    if response.headers.get("content-type", [""])[0].startswith("text/event-stream"):
        _check_stream(case, response.content)
    return response.status_code


def _fuzz(operation: Operation, mode: GenerationMode, world: World, examples: int) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        # One inner function serves every operation: saved examples would replay across them
        # (a failure prints its seed instead).
        database=None,
    )
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def check(case: AnyCase, data: st.DataObject) -> None:
        _steer(case, data, world)
        _exchange(case, world.root)

    check()


def _cases() -> list[Any]:
    cases = []
    for operation in _operations():
        has_input = bool(operation.path_parameters or operation.query or operation.body)
        for mode in GenerationMode:
            if mode is GenerationMode.NEGATIVE and not has_input:
                continue  # nothing the document could call invalid
            cases.append(pytest.param(operation, mode, id=f"{operation.label}-{mode.value}"))
    return cases


def _examples(operation: Operation) -> int:
    # A quarter of the profile's examples per operation and mode (10 by default, 50 in CI);
    # three times that for the main chat route, where the turn logic is.
    base = max(5, settings().max_examples // 4)
    return 3 * base if operation.path == "/v1/chat/completions" else base


@pytest.mark.parametrize(("operation", "mode"), _cases())
async def test_server_matches_the_document(
    tmp_path: Path, operation: Operation, mode: GenerationMode
) -> None:
    async with (
        live_server(
            tmp_path, _responder, keyring=KEYS, agents=AGENTS, blocks=BLOCKS, options=OPTIONS
        ) as live,
        contextlib.AsyncExitStack() as stack,
    ):
        held = None
        if operation.path == "/v1/runs/{run}/cancel":
            held = await stack.enter_async_context(_held_run(live))
        world = await _world(live, held)
        await asyncio.to_thread(_fuzz, operation, mode, world, _examples(operation))


# ---------------------------------------------------------------------------------------------
# Requests the fuzzer makes too rarely to be sure of them (each found by fuzzing longer)


def _case(method: str, path: str, body: Any = None, **params: str) -> AnyCase:
    operation = SCHEMA[path][method]
    headers = {"Authorization": ACME}
    if body is None:
        return operation.Case(path_parameters=params, headers=headers)
    return operation.Case(
        path_parameters=params, headers=headers, body=body, media_type="application/json"
    )


_AGENT = "/v1/agents"
_BLOCK = "/v1/agents/{agent}/blocks/{label}"


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            _case("POST", _AGENT, {"name": "b", "blocks": [{"label": "h", "limit": 2**63}]}),
            id="create-agent-block-limit-too-big",
        ),
        pytest.param(
            _case("PUT", _BLOCK, {"value": "x", "limit": 2**63}, agent="ava", label="human"),
            id="put-block-limit-too-big",
        ),
        pytest.param(
            _case("POST", _AGENT, {"name": "b", "blocks": [{"label": "h", "limit": 2**63 - 1}]}),
            id="create-agent-largest-block-limit",
        ),
        pytest.param(
            _case("POST", _AGENT, {"name": "b", "tools": list(SAFE_TOOLS[:1]) * 2}),
            id="create-agent-same-tool-module-twice",
        ),
    ],
)
async def test_requests_the_fuzzer_rarely_makes(tmp_path: Path, case: AnyCase) -> None:
    async with live_server(
        tmp_path, _responder, keyring=KEYS, agents=AGENTS, options=OPTIONS
    ) as live:
        await asyncio.to_thread(_exchange, case, live.root)


@pytest.mark.parametrize("params", [{"nope": 1}, {"max_steps": "ten"}])
async def test_agent_params_are_checked_when_the_agent_is_created(
    tmp_path: Path, params: dict[str, Any]
) -> None:
    create = _case("POST", _AGENT, {"name": "p", "model": "scripted", "params": params})
    turn = _case(
        "POST", "/v1/chat/completions", chat_body([{"role": "user", "content": "hi"}], model="p")
    )
    async with live_server(tmp_path, _responder, keyring=KEYS, options=OPTIONS) as live:
        if await asyncio.to_thread(_exchange, create, live.root) == 201:
            assert await asyncio.to_thread(_exchange, turn, live.root) == 200
