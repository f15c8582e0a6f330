"""The agents API: agents and templates, memory blocks, messages and runs (JSON).

Every route resolves the agent within the request's tenant, so another tenant's agent (or
run) answers 404 exactly as one that does not exist. Errors carry stable codes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import cattrs
import orjson
from attrs import field, frozen
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from loopwright.schemas import Agent, Block, Message, RunRecord, converter
from loopwright.workflows.agent.errors import AgentExistsError

from .errors import ApiError, error_response, json_response

if TYPE_CHECKING:
    from .app import Server

__all__ = ["AgentSpec", "agent_routes"]

_MAX_PAGE = 200


@frozen(kw_only=True)
class AgentSpec:
    """The body of `POST /v1/agents`."""

    name: str
    model: str = "gpt-4o-mini"
    system: str = ""
    workflow: str = "low_latency_agent"
    tools: tuple[str, ...] = ()
    params: Mapping[str, bool | int | float | str] = field(factory=dict)
    blocks: tuple[Block, ...] = ()
    template: bool = False


@frozen(kw_only=True)
class BlockUpdate:
    """The body of `PUT /v1/agents/{agent}/blocks/{label}` (omitted fields are kept)."""

    value: str
    limit: int | None = None
    read_only: bool | None = None
    description: str | None = None


def agent_routes(server: Server) -> list[Route]:
    """Routes of the agents API, bound to `server`."""

    def bind(endpoint: Callable[[Server, Request], Awaitable[Response]]) -> Any:
        async def run(request: Request) -> Response:
            try:
                return await endpoint(server, request)
            except Exception as err:  # typed JSON errors, never a bare 500 page
                return error_response(err, not_found_code="agent_not_found")

        return run

    return [
        Route("/v1/agents", bind(_create_agent), methods=["POST"]),
        Route("/v1/agents", bind(_list_agents), methods=["GET"]),
        Route("/v1/agents/{agent}", bind(_get_agent), methods=["GET"]),
        Route("/v1/agents/{agent}", bind(_delete_agent), methods=["DELETE"]),
        Route("/v1/agents/{agent}/blocks", bind(_list_blocks), methods=["GET"]),
        Route("/v1/agents/{agent}/blocks/{label}", bind(_put_block), methods=["PUT"]),
        Route("/v1/agents/{agent}/messages", bind(_list_messages), methods=["GET"]),
        Route("/v1/agents/{agent}/runs", bind(_list_runs), methods=["GET"]),
        Route("/v1/runs/{run}", bind(_get_run), methods=["GET"]),
        Route("/v1/runs/{run}/cancel", bind(_cancel_run), methods=["POST"]),
    ]


async def _body(request: Request, cls: type[Any]) -> Any:
    raw = await request.body()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise ApiError(400, f"the body is not valid JSON: {err}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_body")
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError) as err:
        problems = (
            cattrs.transform_error(err)
            if isinstance(err, cattrs.BaseValidationError)
            else [str(err)]
        )
        raise ApiError(400, "invalid body: " + "; ".join(problems), code="invalid_body") from None


async def _agent(server: Server, request: Request) -> Agent:
    tenant = server.tenant(request)
    agent: Agent = await server.app.store.get_agent(request.path_params["agent"], tenant=tenant)
    return agent


def agent_json(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "object": "agent",
        "name": agent.name,
        "model": agent.model,
        "system": agent.system,
        "workflow": agent.workflow,
        "tools": list(agent.tools),
        "params": dict(agent.params),
        "template": agent.is_template,
        "version": agent.version,
        "created_at": agent.created_at,
    }


def block_json(block: Block) -> dict[str, Any]:
    return {"object": "block", **converter.unstructure(block)}


def message_json(message: Message) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(message)
    data["object"] = "message"
    return data


def run_json(record: RunRecord) -> dict[str, Any]:
    error = None if record.error is None else converter.unstructure(record.error)
    return {
        "id": record.id,
        "object": "run",
        "agent_id": record.key,
        "workflow": record.workflow,
        "status": record.status,
        "state": record.state,
        "stop_reason": record.stop_reason,
        "error": error,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


async def _create_agent(server: Server, request: Request) -> Response:
    tenant = server.tenant(request)
    spec: AgentSpec = await _body(request, AgentSpec)
    if not spec.name or "~" in spec.name or "/" in spec.name:
        raise ApiError(
            400,
            "an agent name must be non-empty without `~` or `/`",
            code="invalid_name",
            param="name",
        )
    labels = [b.label for b in spec.blocks]
    if len(set(labels)) != len(labels):
        raise ApiError(400, "two blocks have the same label", code="invalid_block", param="blocks")
    for block in spec.blocks:
        _check_block(block.value, block.limit)
    _check_trusted(spec, server.chat.options.tool_modules)
    app = server.app
    _check_workflow_params(app, spec)
    agent = Agent(
        id=app.engine.ids.new_id("agent"),
        name=spec.name,
        model=spec.model,
        system=spec.system,
        workflow=spec.workflow,
        tools=spec.tools,
        params=dict(spec.params),
        tenant=tenant,
        is_template=spec.template,
        created_at=app.engine.clock.now(),
    )
    try:
        created = await app.create_agent(agent, spec.blocks)
    except AgentExistsError:
        raise
    except (ImportError, LookupError, ValueError, TypeError) as err:  # won't load
        raise ApiError(400, f"the agent cannot be created: {err}", code="invalid_agent") from None
    return json_response(agent_json(created), status=201)


def _check_trusted(spec: AgentSpec, allowed: tuple[str, ...]) -> None:
    """Workflow files and tool modules are the operator's configuration, not a client's."""
    workflow = spec.workflow
    if any(c in workflow for c in "/\\") or workflow.endswith((".toml", ".yaml", ".yml", ".json")):
        raise ApiError(
            400,
            "`workflow` names a packaged workflow here; agents on workflow files are created by "
            "the operator (`loopwright agent create --workflow FILE`)",
            code="invalid_agent",
            param="workflow",
        )
    refused = [t for t in spec.tools if t not in allowed]
    if refused:
        raise ApiError(
            400,
            f"tool module {refused[0]!r} is not allowed on this server; the operator allows "
            "modules with `loopwright serve --allow-tools MODULE`",
            code="invalid_agent",
            param="tools",
        )


def _check_workflow_params(app: Any, spec: AgentSpec) -> None:
    """Refuse params the workflow does not declare (or of the wrong type) now, not at the
    agent's first turn."""
    from loopwright.engine._policy import effective_params

    try:
        declared = app.workflow(spec.workflow).params
        effective_params(declared, spec.params)
    except (ImportError, LookupError, ValueError, TypeError) as err:
        raise ApiError(400, f"the agent cannot be created: {err}", code="invalid_agent") from None


_MAX_LIMIT = 2**63 - 1  # what a BIGINT column holds


def _check_block(value: str, limit: int) -> None:
    if limit > _MAX_LIMIT:
        raise ApiError(400, f"a block limit must be at most {_MAX_LIMIT}", code="invalid_block")
    if limit <= 0:
        raise ApiError(400, f"a block limit must be positive, got {limit}", code="invalid_block")
    if len(value) > limit:
        raise ApiError(
            400,
            f"the block value holds {len(value)} characters, over its limit of {limit}; "
            "shorten it or raise `limit`",
            code="block_too_long",
        )


async def _list_agents(server: Server, request: Request) -> Response:
    tenant = server.tenant(request)
    agents = await server.app.store.list_agents(tenant=tenant)
    return json_response({"object": "list", "data": [agent_json(a) for a in agents]})


async def _get_agent(server: Server, request: Request) -> Response:
    return json_response(agent_json(await _agent(server, request)))


async def _delete_agent(server: Server, request: Request) -> Response:
    agent = await _agent(server, request)
    lease = await server.app.locks.acquire(agent.id, policy="reject")
    try:
        await server.app.store.delete_agent(agent.id)
        server.app.agents.forget(agent.id)
        server.chat.forget(agent.id)
    finally:
        await lease.release()
    return json_response({"id": agent.id, "object": "agent", "deleted": True})


async def _list_blocks(server: Server, request: Request) -> Response:
    agent = await _agent(server, request)
    blocks = (await server.app.store.load_context(agent.id)).blocks
    return json_response({"object": "list", "data": [block_json(b) for b in blocks]})


async def _put_block(server: Server, request: Request) -> Response:
    agent = await _agent(server, request)
    update: BlockUpdate = await _body(request, BlockUpdate)
    label = request.path_params["label"]
    blocks = (await server.app.store.load_context(agent.id)).blocks
    old = next((b for b in blocks if b.label == label), Block(label=label))
    block = Block(
        label=label,
        value=update.value,
        limit=old.limit if update.limit is None else update.limit,
        read_only=old.read_only if update.read_only is None else update.read_only,
        description=old.description if update.description is None else update.description,
    )
    _check_block(block.value, block.limit)
    await server.app.store.put_block(agent.id, block)
    return json_response(block_json(block))


def _int_query(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= _MAX_PAGE:
        raise ApiError(
            400,
            f"`{name}` must be an integer from 1 to {_MAX_PAGE}",
            code="invalid_query",
            param=name,
        )
    return value


async def _list_messages(server: Server, request: Request) -> Response:
    agent = await _agent(server, request)
    limit = _int_query(request, "limit", 50)
    before = request.query_params.get("before") or None
    store = server.app.store
    if before is not None and not await store.find_messages(agent.id, ids=[before]):
        raise ApiError(
            404,
            f"no message {before!r} in this agent's log",
            code="cursor_not_found",
            param="before",
        )
    page = list(await store.list_messages(agent.id, limit=limit + 1, before=before))
    more = len(page) > limit
    page = page[-limit:]
    newest_first = [message_json(m) for m in reversed(page)]
    cursor = page[0].id if more and page else None
    return json_response({"object": "list", "data": newest_first, "next_cursor": cursor})


async def _list_runs(server: Server, request: Request) -> Response:
    agent = await _agent(server, request)
    limit = _int_query(request, "limit", 50)
    runs = await server.app.store.list_runs(key=agent.id, limit=limit)
    return json_response({"object": "list", "data": [run_json(r) for r in runs]})


async def _run(server: Server, request: Request) -> RunRecord:
    tenant = server.tenant(request)
    run_id = request.path_params["run"]
    record: RunRecord | None = await server.app.store.load(run_id)
    missing = ApiError(404, f"no run {run_id!r}", code="run_not_found", param="run")
    if record is None or record.key is None:
        raise missing
    try:
        await server.app.store.get_agent(record.key, tenant=tenant)
    except LookupError:
        raise missing from None
    return record


async def _get_run(server: Server, request: Request) -> Response:
    return json_response(run_json(await _run(server, request)))


async def _cancel_run(server: Server, request: Request) -> Response:
    record = await _run(server, request)
    turn = server.chat.live.get(record.id)
    if turn is None or turn.run is None:
        raise ApiError(
            409,
            f"run {record.id!r} is not running in this server ({record.status}); nothing to cancel",
            code="run_not_running",
        )
    turn.run.cancel()
    return json_response({"id": record.id, "object": "run", "status": "cancelling"}, status=202)
