"""The composition root: the one place that meets every floor and builds a running app."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import attrs

from loopwright.engine import Compiled, Engine, Registry, Run
from loopwright.engine.errors import LoopwrightError
from loopwright.engine.ports import LLM
from loopwright.schemas import Agent, Block, Message
from loopwright.workflows import AGENT_LOOP, registry, workflow_path
from loopwright.workflows.agent.ports import AgentLeases
from loopwright.workflows.agent.services import AgentServices
from loopwright.workflows.agent.turn import TurnData, TurnInput

from .locks import AgentLocks, BusyPolicy

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///loopwright.db"


class SettingsError(LoopwrightError, ValueError):
    """An environment variable holds a value the settings cannot use."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"{name}={value!r} is not {expected}; fix or unset it")
        self.name = name
        self.value = value


def _seconds(env: Mapping[str, str], name: str) -> float | None:
    """A positive number of seconds from `env[name]` (None when unset or empty)."""
    raw = env.get(name) or None
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):  # also refuses NaN
        raise SettingsError(name, raw, "a positive number of seconds")
    return value


def _policy(env: Mapping[str, str]) -> str | None:
    raw = env.get("LOOPWRIGHT_BUSY_POLICY") or None
    if raw not in (None, "queue", "reject"):
        raise SettingsError("LOOPWRIGHT_BUSY_POLICY", str(raw), "`queue` or `reject`")
    return raw


@attrs.frozen(kw_only=True)
class Settings:
    """Where the data lives and which LLM endpoint to call (environment by default)."""

    database_url: str = DEFAULT_DATABASE_URL
    """`LOOPWRIGHT_DATABASE_URL`: SQLite file (default) or PostgreSQL."""
    base_url: str | None = None
    """`OPENAI_BASE_URL`: any OpenAI-compatible endpoint."""
    api_key: str | None = None
    """`OPENAI_API_KEY`."""
    transport: str = "aiohttp"
    """`LOOPWRIGHT_LLM_TRANSPORT`: `aiohttp` (fast path) or `sdk`."""
    busy_policy: BusyPolicy = "queue"
    """`LOOPWRIGHT_BUSY_POLICY`: a turn for an agent already in a turn waits (`queue`) or
    fails with `AgentBusyError` (`reject`)."""
    busy_wait_s: float = 30.0
    """`LOOPWRIGHT_BUSY_WAIT`: how long a queued turn waits, in seconds."""
    lease_ttl_s: float = 30.0
    """`LOOPWRIGHT_LEASE_TTL`: seconds an agent stays taken by a worker that died mid-turn
    (a live worker renews its leases every third of it)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from environment variables, then explicit overrides.

        Raises: SettingsError (a busy policy, wait or lease TTL that is not valid)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "database_url": env.get("LOOPWRIGHT_DATABASE_URL") or DEFAULT_DATABASE_URL,
            "base_url": env.get("OPENAI_BASE_URL") or None,
            "api_key": env.get("OPENAI_API_KEY") or None,
            "transport": env.get("LOOPWRIGHT_LLM_TRANSPORT") or "aiohttp",
            "busy_policy": _policy(env),
            "busy_wait_s": _seconds(env, "LOOPWRIGHT_BUSY_WAIT"),
            "lease_ttl_s": _seconds(env, "LOOPWRIGHT_LEASE_TTL"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: v for k, v in values.items() if v is not None})


class _LazyLLM:
    """The OpenAI adapter, built on first use: verbs that never call the LLM (runs, agent
    list, messages) do not pay for importing the SDK."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._llm: Any = None

    def _get(self) -> Any:
        if self._llm is None:
            from loopwright.adapters.llm.openai_llm import OpenAILLM

            self._llm = OpenAILLM(
                base_url=self._settings.base_url,
                api_key=self._settings.api_key or "unset",
                transport=self._settings.transport,  # type: ignore[arg-type]
            )
        return self._llm

    def stream(self, body: Mapping[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        stream: AsyncGenerator[dict[str, Any], None] = self._get().stream(body)
        return stream

    async def complete(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._get().complete(body)
        return result

    async def aclose(self) -> None:
        if self._llm is not None:
            await self._llm.aclose()


def _toolbox_for(agent: Agent) -> Any:
    from loopwright.adapters.tools.python import PythonToolbox

    return PythonToolbox.from_modules(list(agent.tools))


def _leases_of(store: Any) -> AgentLeases | None:
    """The store's leases, if it keeps any (a store of the run and agent ports only has none:
    its turns are then excluded in this process only)."""
    methods = ("acquire_lease", "renew_lease", "release_lease")
    has = all(callable(getattr(store, m, None)) for m in methods)
    return cast(AgentLeases, store) if has else None


class App:
    """A store, an LLM client, an engine and the agent loop's services, wired together.

    `locks` keeps one writer per agent (across processes when the store keeps leases): hold an
    agent with `hold` around a turn, or take `locks.acquire` directly."""

    def __init__(
        self,
        *,
        store: Any,
        llm: LLM,
        engine: Engine,
        services: AgentServices,
        registry: Registry,
        locks: AgentLocks | None = None,
    ) -> None:
        self.store = store
        self.llm = llm
        self.engine = engine
        self.agents = services
        self.registry = registry
        self.locks = locks or AgentLocks(_leases_of(store))
        self._compiled: dict[str, Compiled] = {}

    @classmethod
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        llm: LLM | None = None,
        store: Any = None,
        **engine_kw: Any,
    ) -> App:
        """Open the store (creating its schema when missing) and build the app."""
        settings = settings or Settings.from_env()
        if store is None:
            from loopwright.adapters.storage.sql import open_store

            store = await open_store(settings.database_url)
        if llm is None:
            llm = _LazyLLM(settings)
        services = AgentServices(store=store, llm=llm, toolbox_for=_toolbox_for)
        engine = Engine(store=store, services={"agent": services}, **engine_kw)
        locks = AgentLocks(
            _leases_of(store),
            policy=settings.busy_policy,
            wait_s=settings.busy_wait_s,
            ttl_s=settings.lease_ttl_s,
        )
        app = cls(
            store=store,
            llm=llm,
            engine=engine,
            services=services,
            registry=registry(),
            locks=locks,
        )
        app.workflow(AGENT_LOOP)
        return app

    async def aclose(self) -> None:
        """Let background work finish (briefly), free the agents still held, then close the
        LLM client and the store."""
        await self.engine.aclose()
        await self.locks.aclose()
        await self.llm.aclose()
        await self.store.aclose()

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def workflow(self, ref: str) -> Compiled:
        """A packaged workflow by name, or a workflow file by path; validated once."""
        compiled = self._compiled.get(ref)
        if compiled is None:
            from loopwright.engine.validate import load_and_validate

            path = (
                Path(ref)
                if ("/" in ref or ref.endswith((".toml", ".yaml", ".yml", ".json")))
                else workflow_path(ref)
            )
            compiled = load_and_validate(path, self.registry)
            self.engine.add_workflow(compiled)
            self._compiled[ref] = compiled
        return compiled

    async def create_agent(self, agent: Agent, blocks: Sequence[Block] = ()) -> Agent:
        """Create an agent after checking that its workflow and tools load."""
        self.workflow(agent.workflow)
        if agent.tools:
            _toolbox_for(agent)
        return await self.store.create_agent(agent, blocks)  # type: ignore[no-any-return]

    @contextlib.asynccontextmanager
    async def hold(
        self,
        agent_ref: str | Agent,
        *,
        policy: BusyPolicy | None = None,
        wait_s: float | None = None,
    ) -> AsyncIterator[Agent]:
        """Hold the agent's lease (one writer per agent) and give the agent as stored once
        held; run its turn inside:

            async with app.hold("ada") as agent:
                async for event in await app.turn(agent, "Hello!"):
                    ...

        `policy` and `wait_s` override the settings' busy policy and wait for this call.
        Raises: AgentNotFoundError, AgentBusyError."""
        agent = agent_ref if isinstance(agent_ref, Agent) else await self.store.get_agent(agent_ref)
        async with await self.locks.acquire(agent.id, policy=policy, wait_s=wait_s):
            yield await self.store.get_agent(agent.id)  # fresh: the last writer moved it on

    async def turn(
        self,
        agent_ref: str | Agent,
        text: str | None = None,
        *,
        messages: Sequence[Message] = (),
        params: Mapping[str, Any] | None = None,
        client_tools: Sequence[Mapping[str, Any]] = (),
        run_id: str | None = None,
        turn_key: str | None = None,
        request: Mapping[str, Any] | None = None,
    ) -> Run:
        """Start one turn of an agent (by name, id or the `Agent` itself): `text` becomes a user
        message with a fresh id. `turn_key` marks the turn for retry detection; `request` is
        what the client sent beside the messages (kept on the run for hooks).

        The turn is not locked: run it inside `hold` (or under a lease of `locks`) so that it
        never interleaves with another turn of the agent."""
        from loopwright.schemas import converter

        agent = agent_ref if isinstance(agent_ref, Agent) else await self.store.get_agent(agent_ref)
        compiled = self.workflow(agent.workflow)
        run_id = run_id or self.engine.ids.new_id("run")
        new = [attrs.evolve(m, run_id=m.run_id or run_id) for m in messages]
        if text is not None:
            new.append(
                Message(
                    id=self.engine.ids.new_id("msg"),
                    role="user",
                    content=text,
                    run_id=run_id,
                    created_at=self.engine.clock.now(),
                )
            )
        turn = TurnInput(
            agent=agent.id,
            messages=tuple(new),
            client_tools=tuple(dict(t) for t in client_tools),
            turn_key=turn_key,
            request=dict(request or {}),
        )
        self.agents.prime(run_id, agent)
        return self.engine.start(
            compiled,
            converter.unstructure(turn),
            params={**agent.params, **(params or {})},
            data=TurnData(agent_id=agent.id),
            key=agent.id,
            run_id=run_id,
        )
