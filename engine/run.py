"""One run: drives a compiled workflow state by state inside the consumer's `async for`.

Streaming handlers are iterated directly by the consumer's task: no queue, no task hop, no
copy per event. The run owns cancellation (the consumer stopping, being cancelled, or
`Run.cancel()`), retries, timeouts, caps and checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import attrs

from loopwright.schemas import (
    ErrorInfo,
    Event,
    Retrying,
    RunFailed,
    RunFinished,
    RunRecord,
    RunStarted,
    RunStatus,
    StateDef,
    StateEntered,
    converter,
)

from ._policy import limits_of, retry_delay
from .context import Outcome, RunContext
from .errors import (
    LoopwrightError,
    NoBranchError,
    StaleWriteError,
    StepError,
    UndeclaredOutcomeError,
)
from .registry import HandlerSpec

if TYPE_CHECKING:
    from .compiled import Compiled
    from .runner import Engine


class _Stop(Exception):
    """Internal: end the run with this record (already terminal)."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record


def _outcome_of(value: Any, state: str) -> Outcome:
    if type(value) is Outcome:
        return value
    if isinstance(value, str):
        return Outcome(value)
    if value is None:
        return Outcome("next")
    raise StepError(
        "bad_outcome",
        f"state {state!r}: handler returned {value!r}; return an outcome name or an Outcome",
    )


async def _call(spec: HandlerSpec, ctx: RunContext, seconds: float | None) -> Any:
    """A plain handler's return value, within `seconds` if given."""
    if seconds is None:
        return await spec.fn(ctx)
    async with asyncio.timeout(seconds):
        return await spec.fn(ctx)


async def _within(agen: AsyncIterator[Any], seconds: float) -> AsyncGenerator[Any, None]:
    """The items of a streaming handler, all within `seconds` (TimeoutError past them)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        async with asyncio.timeout_at(deadline):
            try:
                item = await anext(agen)
            except StopAsyncIteration:
                return
        yield item


class Run:
    """A started or resumed run. Iterate it once (`async for event in run`) for its events."""

    def __init__(
        self, engine: Engine, compiled: Compiled, record: RunRecord, data: Any, *, resumed: bool
    ) -> None:
        self._engine = engine
        self._compiled = compiled
        self._machine = engine.machine(compiled)
        self.record = record
        self._data = data
        self._resumed = resumed
        self._iterated = False
        self._cancel_requested = False
        self._task: asyncio.Task[Any] | None = None
        self._inside = False
        self._pending_save: asyncio.Future[None] | None = None
        self._caps = limits_of(compiled.workflow.limits, record.params)
        self._gen: AsyncGenerator[Event, None] | None = None
        self._stepping = False
        self._counters: dict[str, int] = dict(record.counters)

    @property
    def id(self) -> str:
        """The run id."""
        return self.record.id

    @property
    def data(self) -> Any:
        """The run's current data (structured)."""
        return self._data

    def __aiter__(self) -> AsyncIterator[Event]:
        if self._iterated:
            raise RuntimeError(f"run {self.id!r} is already being iterated; iterate it once")
        self._iterated = True
        self._gen = self._drive(foreground=True, max_states=None)
        return self._gen

    async def __aenter__(self) -> Run:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop iterating: an unfinished run ends `cancelled` (its handler is closed)."""
        if self._gen is not None:
            await self._gen.aclose()

    def cancel(self) -> None:
        """Cancel the run: the running handler is cancelled and the run ends `cancelled`."""
        self._cancel_requested = True
        if self._inside and self._task is not None:
            self._task.cancel()

    async def result(self) -> RunRecord:
        """Consume every event and return the final record."""
        async for _ in self:
            pass
        return self.record

    # -- the state loop ---------------------------------------------------------------------

    async def _drive(
        self, *, foreground: bool, max_states: int | None
    ) -> AsyncGenerator[Event, None]:
        self._task = asyncio.current_task()
        self._inside = True
        try:
            await self._begin()
            self._inside = False
            yield RunStarted(self.record.id, self.record.workflow, self._resumed)
            self._inside = True
            async with aclosing(self._states(foreground, max_states)) as states:
                async for event in states:
                    self._inside = False
                    yield event
                    self._inside = True
        except _Stop as stop:
            self._inside = False
            yield self._terminal(stop.record)
        except StaleWriteError as err:
            # Another worker owns the run now; writing anything more would be wrong.
            self._inside = False
            yield RunFailed("stale_write", str(err), True)
        except asyncio.CancelledError:
            await self._on_cancel()
            if self._own_cancel():
                self._inside = False
                yield RunFinished("cancelled")
                return
            raise
        except GeneratorExit:
            await self._on_cancel()
            raise
        finally:
            self._inside = False

    async def _states(
        self, foreground: bool, max_states: int | None
    ) -> AsyncGenerator[Event, None]:
        wf = self._compiled.workflow
        done = 0
        while max_states is None or done < max_states:
            sd = wf.states[self.record.state]
            if sd.final:
                reason = self.record.stop_reason or sd.stop_reason or "final"
                raise _Stop(await self._finish(reason))
            if foreground and sd.background and self.record.status == "running":
                await self._enter_background()
                return
            cap = self._count_entry(sd)
            if cap is not None:
                raise _Stop(await self._finish(cap))
            yield StateEntered(self.record.state, self.record.seq)
            outcome: Outcome | None = None
            async with aclosing(self._execute(sd)) as items:
                async for item in items:
                    if type(item) is Outcome:
                        outcome = item
                    else:
                        yield item
            assert outcome is not None  # _execute ends with exactly one outcome or raises
            await self._transition(sd, outcome)
            done += 1

    async def _execute(self, sd: StateDef) -> AsyncGenerator[Any, None]:
        """One state with its retry policy: handler events, then exactly one Outcome."""
        spec = self._compiled.handlers[self.record.state]
        attempt = 1
        while True:
            emitted = False
            try:
                async with aclosing(self._attempt(spec, sd, attempt)) as items:
                    async for item in items:
                        if type(item) is not Outcome:
                            emitted = True
                        yield item
                return
            except StepError as err:
                delay = retry_delay(sd.retry, err, attempt, emitted)
                if delay is None:
                    raise _Stop(await self._fail(err.code, err.message, err.retryable)) from err
                yield Retrying(self.record.state, attempt, err.code, int(delay * 1000))
                await asyncio.sleep(delay)
                attempt += 1

    async def _attempt(
        self, spec: HandlerSpec, sd: StateDef, attempt: int
    ) -> AsyncGenerator[Any, None]:
        ctx = self._ctx(attempt)
        timeout = None if sd.timeout_ms is None else sd.timeout_ms / 1000
        try:
            if not spec.streaming:
                yield _outcome_of(await _call(spec, ctx, timeout), ctx.state)
                return
            # The handler is iterated here, not in a generator of its own: one layer less
            # per event on the streaming path (only a state with a timeout adds one).
            agen = spec.fn(ctx)
            items = agen if timeout is None else _within(agen, timeout)
            try:
                async for item in items:
                    yield item
                    if type(item) is Outcome:
                        return
            finally:
                if items is not agen:
                    await items.aclose()
                await agen.aclose()
            raise StepError(
                "bad_outcome",
                f"state {ctx.state!r}: streaming handler ended without yielding an Outcome",
            )
        except TimeoutError as err:
            raise StepError(
                "timeout",
                f"state {ctx.state!r} exceeded its timeout of {sd.timeout_ms} ms",
                retryable=True,
            ) from err
        except (StepError, _Stop, asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as err:  # a bug in user code: report it, never crash the consumer
            raise StepError(
                "handler_error", f"state {ctx.state!r}: {type(err).__name__}: {err}"
            ) from err

    # -- record keeping ---------------------------------------------------------------------

    def _ctx(self, attempt: int) -> RunContext:
        rec = self.record
        return RunContext(
            run_id=rec.id,
            workflow=rec.workflow,
            state=rec.state,
            attempt=attempt,
            seq=rec.seq,
            params=rec.params,
            counters=self._counters,
            data=self._data,
            inputs=rec.inputs,
            key=rec.key,
            services=self._engine.services,
            clock=self._engine.clock,
            ids=self._engine.ids,
        )

    async def _begin(self) -> None:
        if self._resumed:
            return
        if self._compiled.workflow.durability != "exit":
            # Overlapped with the first states; awaited before the first checkpoint.
            self._pending_save = asyncio.ensure_future(self._engine.store.create(self.record))
        try:
            self._machine.enter_initial(self._ctx(1))
        except Exception as err:  # a user hook raised
            raise _Stop(await self._fail("hook_error", f"{type(err).__name__}: {err}")) from err

    async def _transition(self, sd: StateDef, outcome: Outcome) -> None:
        state = self.record.state
        if outcome.has_data:
            self._data = outcome.data
        try:
            target = self._machine.fire(state, outcome.name, self._ctx(1))
        except (UndeclaredOutcomeError, NoBranchError) as err:
            code = "undeclared_outcome" if isinstance(err, UndeclaredOutcomeError) else "no_branch"
            raise _Stop(await self._fail(code, str(err))) from err
        except LoopwrightError:
            raise
        except Exception as err:  # a user hook raised
            raise _Stop(await self._fail("hook_error", f"{type(err).__name__}: {err}")) from err
        counters = dict(self._counters)
        counters["transitions"] = counters.get("transitions", 0) + 1
        self._counters = counters
        rec = attrs.evolve(
            self.record,
            state=target,
            seq=self.record.seq + 1,
            counters=counters,
            data=self._unstructured(),
            visited=(*self.record.visited, state),
            error=outcome.error or self.record.error,
            stop_reason=outcome.stop_reason or self.record.stop_reason,
            updated_at=self._engine.clock.now(),
        )
        if self._stepping:
            await self._checkpoint(rec, force=True)
        elif sd.checkpoint and not self._compiled.workflow.states[target].final:
            await self._checkpoint(rec)
        else:
            # Replayed from the previous checkpoint after a crash; or a final state, whose
            # terminal write follows at once.
            self.record = rec
        max_transitions = self._caps[1]
        if (
            max_transitions is not None
            and counters["transitions"] >= max_transitions
            and not self._compiled.workflow.states[target].final
        ):
            raise _Stop(await self._finish("max_transitions"))

    def _count_entry(self, sd: StateDef) -> str | None:
        """Count the entry into the current state; return a cap's stop reason if one is hit."""
        rec = self.record
        counters = dict(self._counters)
        visits = f"visits.{rec.state}"
        counters[visits] = counters.get(visits, 0) + 1
        if sd.step:
            counters["steps"] = counters.get("steps", 0) + 1
            max_steps = self._caps[0]
            if max_steps is not None and counters["steps"] > max_steps:
                return "max_steps"
        max_wall = self._caps[2]
        if max_wall is not None and (self._engine.clock.now() - rec.started_at) * 1000 > max_wall:
            return "max_wall_time"
        self._counters = counters  # joins the record at the transition's single evolve
        return None

    def _unstructured(self) -> Any:
        if self._compiled.data_type is None:
            return self._data
        return converter.unstructure(self._data, self._compiled.data_type)

    async def _checkpoint(self, rec: RunRecord, *, force: bool = False) -> None:
        self.record = rec
        mode = "sync" if force else self._compiled.workflow.durability
        if mode == "exit":
            return
        if self._pending_save is not None:
            pending, self._pending_save = self._pending_save, None
            await pending
        if mode == "sync":
            await self._engine.store.save(rec)
        else:
            self._pending_save = asyncio.ensure_future(self._engine.store.save(rec))

    async def _write_terminal(self, rec: RunRecord) -> RunRecord:
        rec = attrs.evolve(rec, updated_at=self._engine.clock.now())
        self.record = rec
        if self._pending_save is not None:
            pending, self._pending_save = self._pending_save, None
            # The terminal write below reports a takeover if there was one.
            with contextlib.suppress(LoopwrightError):
                await pending
        if self._compiled.workflow.durability == "exit" and not self._resumed:
            await self._engine.store.create(attrs.evolve(rec, status="running"))
        await self._engine.store.save(rec)
        return rec

    async def _finish(self, reason: str) -> RunRecord:
        rec = self.record
        status: RunStatus = "failed" if rec.error is not None else "finished"
        return await self._write_terminal(attrs.evolve(rec, status=status, stop_reason=reason))

    async def _fail(self, code: str, message: str, retryable: bool = False) -> RunRecord:
        error = ErrorInfo(code=code, message=message, retryable=retryable)
        return await self._write_terminal(
            attrs.evolve(self.record, status="failed", stop_reason=code, error=error)
        )

    async def _enter_background(self) -> None:
        rec = attrs.evolve(self.record, status="background", updated_at=self._engine.clock.now())
        self.record = rec
        if self._pending_save is not None:
            pending, self._pending_save = self._pending_save, None
            await pending
        if self._compiled.workflow.durability == "exit" and not self._resumed:
            await self._engine.store.create(attrs.evolve(rec, status="running"))
        # Pending background work is always recorded before the consumer's terminal event.
        await self._engine.store.save(rec)
        self._engine.spawn_background(self)
        raise _Stop(rec)

    def _terminal(self, rec: RunRecord) -> Event:
        if rec.error is not None:
            return RunFailed(rec.error.code, rec.error.message, rec.error.retryable)
        return RunFinished(rec.stop_reason or "final")

    def _own_cancel(self) -> bool:
        task = self._task
        if self._cancel_requested and task is not None and task.cancelling():
            task.uncancel()
            return True
        return False

    async def _on_cancel(self) -> None:
        if self.record.status not in ("running",):
            return
        rec = attrs.evolve(self.record, status="cancelled", stop_reason="cancelled")
        # Taken over by another worker: that worker owns the record now.
        with contextlib.suppress(LoopwrightError):
            await asyncio.shield(self._write_terminal(rec))

    async def run_background(self) -> None:
        """Execute the remaining (background) states with nobody consuming their events."""
        self._iterated = True
        async for _ in self._drive(foreground=False, max_states=None):
            pass

    async def step(self) -> None:
        """Execute exactly one state (or write the terminal record) and checkpoint it."""
        self._iterated = True
        self._stepping = True
        async for _ in self._drive(foreground=False, max_states=1):
            pass


def initial_record(
    compiled: Compiled,
    *,
    run_id: str,
    inputs: Any,
    params: Mapping[str, Any],
    data: Any,
    key: str | None,
    now: float,
) -> RunRecord:
    """The record of a run that has not executed any state yet."""
    unstructured = (
        data if compiled.data_type is None else converter.unstructure(data, compiled.data_type)
    )
    return RunRecord(
        id=run_id,
        workflow=compiled.name,
        state=compiled.workflow.initial,
        data=unstructured,
        inputs=inputs,
        params=dict(params),
        key=key,
        created_at=now,
        updated_at=now,
        started_at=now,
    )
