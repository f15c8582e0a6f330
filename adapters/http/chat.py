"""One `chat.completions` request as one turn of a stateful agent.

The client sends its whole transcript; the server owns the history and uses the client's copy
only to find what is new (`turn_suffix`). The turn then runs under the agent's lease (one
writer per agent). The same turn sent again within the window (a client retry) is answered
from the store, not run twice; a turn the client abandoned before hearing anything is
discarded, so the longer utterance that follows makes one user message, not two.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from attrs import frozen

from loopwright.schemas import (
    Agent,
    ClientToolCall,
    Event,
    Message,
    RunFinished,
    RunRecord,
    TextDelta,
    ToolCallStarted,
)
from loopwright.workflows.agent.errors import AgentExistsError, AgentNotFoundError
from loopwright.workflows.agent.speech import spoken_text

from ..locks import BusyPolicy, Lease
from .memo import LastTurns, SessionAgents
from .request import ChatRequest
from .session import session_key
from .suffix import Suffix, turn_suffix
from .turn_key import input_ids, to_messages

if TYPE_CHECKING:
    from loopwright.engine import Run

    from ..wiring import App

__all__ = ["ChatService", "ServerOptions", "Turn", "TurnTooLargeError"]

_log = logging.getLogger(__name__)


class TurnTooLargeError(ValueError):
    """The turn's new messages exceed the configured size (HTTP 400)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the new messages of this turn hold {size} characters, more than the server's "
            f"limit of {limit}; send a shorter message (the limit is `--max-input-chars`)"
        )
        self.code = "input_too_large"
        self.param = "messages"


@frozen(kw_only=True)
class ServerOptions:
    """Behaviour of the chat endpoint; defaults suit a voice platform."""

    turn_window_s: float = 300.0
    """An identical turn within this many seconds is a retry: replayed, not run again."""
    busy_policy: BusyPolicy = "queue"
    """A turn for an agent that is already in a turn: wait (`queue`) or fail (`reject`)."""
    busy_wait_s: float = 30.0
    """How long a queued turn waits before failing with `agent_busy`."""
    ping_s: float = 5.0
    """Keep-alive comment interval while no token flows (LiveKit gives up after 10 s)."""
    max_input_chars: int = 32_000
    """Largest total text of one turn's new messages."""
    tool_modules: tuple[str, ...] = ()
    """Tool modules an API client may name in an agent's `tools` (`--allow-tools`): creating
    an agent imports them, so a client never picks code the operator did not allow."""
    resolve_ttl_s: float = 30.0
    """How long a session's agent, once resolved from `model`, is reused without looking the
    model up again (the agent itself is read afresh every turn): a template deleted by
    another process stops serving its live sessions here within this time."""


class Turn:
    """A turn ready to answer: a live run, or a replay of the stored reply to the same turn."""

    def __init__(
        self,
        *,
        agent: Agent,
        lease: Lease,
        run: Run | None,
        replay: Sequence[Event] = (),
        run_id: str,
        tenant: str,
        key: str | None = None,
    ) -> None:
        self.agent = agent
        self.lease = lease
        self.run = run
        self.replayed = run is None
        self._replay = replay
        self.run_id = run_id
        self.tenant = tenant
        self.key = key
        """The turn key (retry detection)."""
        self.heard = False
        """Whether any text or client tool call has gone out to the client."""
        self.acted = False
        """Whether one of the agent's own tools started (a side effect: never discarded)."""

    async def events(self) -> AsyncIterator[Event]:
        """The events to encode; marks the turn heard at its first text or client call."""
        if self.run is None:
            for event in self._replay:
                self.heard = True
                yield event
            return
        try:
            async for event in self.run:
                if isinstance(event, ToolCallStarted):
                    self.acted = True
                elif not self.heard and (
                    (isinstance(event, TextDelta) and event.text)
                    or isinstance(event, ClientToolCall)
                ):
                    self.heard = True
                yield event
        finally:
            await self.run.aclose()


class ChatService:
    """Turns for the chat endpoint: agent and session resolution, lease, retries, discard."""

    def __init__(self, app: App, options: ServerOptions | None = None) -> None:
        self.app = app
        self.options = options or ServerOptions()
        self.live: dict[str, Turn] = {}
        """Turns in progress by run id (for `POST /v1/runs/{id}/cancel`)."""
        self.sessions = SessionAgents(self.options.resolve_ttl_s)
        """Which agent each (tenant, model, session) resolved to."""
        self.last_turns = LastTurns()
        """The last turn run here per agent (spares the retry check its query)."""

    def forget(self, agent_id: str) -> None:
        """Forget what is remembered about an agent or template that was deleted."""
        self.sessions.forget(agent_id)
        self.last_turns.forget(agent_id)

    async def agent_for(self, tenant: str, model: str, session: str) -> Agent:
        """The agent `model` names, or the session's agent made from the template it names;
        possibly as it was when first resolved (read it again under its lease).

        Raises: AgentNotFoundError."""
        key = (tenant, model, session)
        now = self.app.engine.clock.now()
        known = self.sessions.get(key, now)
        if known is not None:
            return known
        agent, template = await self._resolve(tenant, model, session)
        self.sessions.put(key, agent, template=template, now=now)
        return agent

    async def _resolve(self, tenant: str, model: str, session: str) -> tuple[Agent, str | None]:
        """The agent and the id of the template it was made from (None: no template)."""
        store = self.app.store
        agent: Agent = await store.get_agent(model, tenant=tenant)
        if not agent.is_template:
            return agent, None
        name = f"{agent.name}~{_short_hash(session)}"
        try:
            found: Agent = await store.get_agent(name, tenant=tenant)
            return found, agent.id
        except AgentNotFoundError:
            pass
        blocks = (await store.load_context(agent.id)).blocks
        fresh = attrs.evolve(
            agent,
            id=self.app.engine.ids.new_id("agent"),
            name=name,
            is_template=False,
            version=0,
            created_at=self.app.engine.clock.now(),
        )
        try:
            created: Agent = await store.create_agent(fresh, blocks)
            return created, agent.id
        except AgentExistsError:  # another request of the same session created it first
            again: Agent = await store.get_agent(name, tenant=tenant)
            return again, agent.id

    async def open(self, tenant: str, headers: Mapping[str, str], req: ChatRequest) -> Turn:
        """Resolve, take the agent's lease and start (or replay) the turn.

        Raises: AgentNotFoundError, AgentBusyError, TurnTooLargeError."""
        session = session_key(headers, req)
        try:
            return await self._open(tenant, session, req)
        except _GoneError:  # deleted since it was resolved: resolve the model again, once
            self.sessions.drop((tenant, req.model, session))
            return await self._open(tenant, session, req)

    async def _open(self, tenant: str, session: str, req: ChatRequest) -> Turn:
        agent = await self.agent_for(tenant, req.model, session)
        opts = self.options
        lease = await self.app.locks.acquire(
            agent.id, policy=opts.busy_policy, wait_s=opts.busy_wait_s
        )
        try:
            turn = await self._start(tenant, agent, session, req, lease)
        except BaseException:
            await lease.release()
            raise
        self.live[turn.run_id] = turn
        return turn

    async def close(self, turn: Turn, *, disconnected: bool) -> None:
        """After the turn's events are closed: discard an unheard abandoned turn, release."""
        try:
            if disconnected and not (turn.heard or turn.acted) and turn.run is not None:
                await self.app.agents.discard_turn(turn.agent.id, turn.run_id)
                _log.info("turn %s abandoned before its first token: discarded", turn.run_id)
        finally:
            self._note(turn)  # before the release: the agent's next turn reads it
            self.live.pop(turn.run_id, None)
            await turn.lease.release()

    async def _start(
        self, tenant: str, agent: Agent, session: str, req: ChatRequest, lease: Lease
    ) -> Turn:
        app = self.app
        try:
            agent = await app.store.get_agent(agent.id)  # fresh version, under the lease
        except AgentNotFoundError as err:
            raise _GoneError(agent.id) from err
        cached = await app.agents.context(agent)
        suffix = turn_suffix(cached.context.messages, req.messages)
        _check_size(suffix, self.options.max_input_chars)
        key = _turn_key(agent.id, session, suffix)
        fresh = self.last_turns.surely_new(agent, key)
        previous = None if fresh else await self._replayable(agent, key)
        if previous is not None:
            record, events = previous
            _log.info("turn %s repeated within the window: replayed", record.id)
            return Turn(
                agent=agent,
                lease=lease,
                run=None,
                replay=events,
                run_id=record.id,
                tenant=tenant,
                key=key,
            )
        run_id = app.engine.ids.new_id("run")
        ids = input_ids(agent.id, session, suffix.anchor, suffix.messages)
        messages = to_messages(suffix.messages, ids, run_id, app.engine.clock.now())
        run = await app.turn(
            agent,
            messages=messages,
            client_tools=req.tools,
            params=self._params(agent, req),
            run_id=run_id,
            turn_key=key,
            request=dict(req.extra),
        )
        return Turn(agent=agent, lease=lease, run=run, run_id=run_id, tenant=tenant, key=key)

    def _note(self, turn: Turn) -> None:
        """Remember the turn as the agent's last, with the agent's version after it; forget
        the agent's last turn when that version is not known for sure."""
        if turn.run is None or turn.key is None:
            return  # a replay: the agent's newest run is still the one remembered
        cached = self.app.agents.cached(turn.agent.id)
        ended = turn.run.record.status in _ENDED
        version = cached.version if cached is not None and ended else None
        self.last_turns.ran(turn.agent.id, turn.key, version)

    def _params(self, agent: Agent, req: ChatRequest) -> dict[str, Any]:
        declared = self.app.workflow(agent.workflow).params
        if req.max_tokens is not None and "max_completion_tokens" in declared:
            return {"max_completion_tokens": req.max_tokens}
        return {}

    async def _replayable(self, agent: Agent, key: str) -> tuple[RunRecord, list[Event]] | None:
        """The agent's newest run, if it answered this same turn within the window."""
        runs = await self.app.store.list_runs(key=agent.id, limit=1)
        if not runs:
            return None
        record = runs[0]
        inputs = record.inputs if isinstance(record.inputs, Mapping) else {}
        if inputs.get("turn_key") != key:
            return None
        if self.app.engine.clock.now() - record.created_at > self.options.turn_window_s:
            return None
        if record.status not in _ENDED:
            return None  # still running elsewhere: the lease makes this a stale record
        messages = await self.app.store.find_messages(agent.id, run_id=record.id)
        client = tuple(_tool_names(inputs.get("client_tools") or ()))
        pre_exec = bool(record.params.get("pre_exec_msg", True))
        events = replay_events(messages, record, pre_exec=pre_exec, client_tools=client)
        return (record, events) if events is not None else None


class _GoneError(AgentNotFoundError):
    """The resolved agent was deleted before its lease was taken (resolve the model again)."""


_ENDED = frozenset({"finished", "background", "cancelled", "failed"})
"""Run statuses after which the record is written for good (nothing runs it any more)."""


def _tool_names(entries: Sequence[Any]) -> list[str]:
    names = []
    for entry in entries:
        function = entry.get("function") if isinstance(entry, Mapping) else None
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


def replay_events(
    messages: Sequence[Message],
    record: RunRecord,
    *,
    pre_exec: bool,
    client_tools: Sequence[str] = (),
) -> list[Event] | None:
    """The events that give the client the stored reply of a run again (None: no reply)."""
    assistant = [m for m in messages if m.role == "assistant"]
    if not assistant:
        return None  # it failed before saying anything: run the turn again
    answered = {m.tool_call_id for m in messages if m.role == "tool"}
    events: list[Event] = []
    text = spoken_text(assistant, pre_exec=pre_exec, client_tools=client_tools)
    if text:
        events.append(TextDelta(text))
    pending = [c for c in assistant[-1].tool_calls if c.id not in answered]
    events.extend(ClientToolCall(i, c.id, c.name, c.arguments) for i, c in enumerate(pending))
    reason = record.stop_reason or "final"
    events.append(RunFinished("final" if reason == "cancelled" else reason))
    return events


def _turn_key(agent_id: str, session: str, suffix: Suffix) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in (agent_id, session, suffix.anchor or ""):
        h.update(part.encode())
        h.update(b"\0")
    for m in suffix.messages:
        for part in (m.role, m.content or "", m.tool_call_id or ""):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        for call in m.tool_calls:
            h.update(f"{call.id}\0{call.name}\0{call.arguments}\0".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def _check_size(suffix: Suffix, limit: int) -> None:
    size = sum(len(m.content or "") for m in suffix.messages)
    if size > limit:
        raise TurnTooLargeError(size, limit)


def now_s() -> int:
    """`created` of a completion: whole seconds."""
    return int(time.time())
