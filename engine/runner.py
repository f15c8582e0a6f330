"""The engine: starts, resumes and advances runs of compiled workflows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from loopwright.schemas import TERMINAL_STATUSES, RunRecord, converter

from ._policy import effective_params
from .clock import RandomIds, SystemClock
from .compiled import Compiled
from .errors import RunFinishedError, RunNotFoundError
from .machine import WorkflowMachine
from .ports import Clock, IdSource, RunStore
from .run import Run, initial_record

_log = logging.getLogger("loopwright.engine")


class Engine:
    """Runs compiled workflows against a `RunStore`, with injected services, clock and ids."""

    def __init__(
        self,
        *,
        store: RunStore | None = None,
        services: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
        ids: IdSource | None = None,
    ) -> None:
        from .testing.memory import MemoryRunStore  # the in-memory default store

        self.store: RunStore = store if store is not None else MemoryRunStore()
        self.services: dict[str, Any] = dict(services or {})
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.ids: IdSource = ids if ids is not None else RandomIds()
        self._workflows: dict[str, Compiled] = {}
        self._machines: dict[int, WorkflowMachine] = {}
        self._background: set[asyncio.Task[None]] = set()

    # -- workflows --------------------------------------------------------------------------

    def add_workflow(self, compiled: Compiled) -> Compiled:
        """Make a compiled workflow known by name (resume and advance look it up)."""
        self._workflows[compiled.name] = compiled
        self.machine(compiled)
        return compiled

    def workflow(self, name: str) -> Compiled:
        """The compiled workflow of that name. Raises: LookupError."""
        try:
            return self._workflows[name]
        except KeyError:
            known = ", ".join(sorted(self._workflows)) or "none"
            raise LookupError(
                f"workflow {name!r} is not loaded in this engine (loaded: {known}); "
                "call engine.add_workflow(...) first"
            ) from None

    def machine(self, compiled: Compiled) -> WorkflowMachine:
        """The machine compiled once per workflow."""
        machine = self._machines.get(id(compiled))
        if machine is None or machine.compiled is not compiled:
            machine = WorkflowMachine(compiled)
            self._machines[id(compiled)] = machine
        return machine

    # -- runs -------------------------------------------------------------------------------

    def start(
        self,
        workflow: Compiled | str,
        inputs: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        key: str | None = None,
        run_id: str | None = None,
    ) -> Run:
        """Start a run (no I/O until it is iterated). Raises: ParamError."""
        compiled = self.workflow(workflow) if isinstance(workflow, str) else workflow
        if compiled.name not in self._workflows:
            self.add_workflow(compiled)
        merged = effective_params(compiled.params, params)
        if data is None and compiled.data_type is not None:
            data = compiled.data_type()
        record = initial_record(
            compiled,
            run_id=run_id or self.ids.new_id("run"),
            inputs=inputs,
            params=merged,
            data=data,
            key=key,
            now=self.clock.now(),
        )
        return Run(self, compiled, record, data, resumed=False)

    async def resume(self, run_id: str) -> Run:
        """Continue a run from its last checkpoint (taking its lease: older writers are fenced).

        Raises: RunNotFoundError, RunFinishedError.
        """
        record = await self.store.claim(run_id)
        return self._reopen(record)

    async def advance(self, run_id: str, expect_seq: int) -> RunRecord:
        """Execute exactly one state of a run and checkpoint it (compare-and-advance).

        A run whose `seq` differs from `expect_seq`, or that has ended, is returned untouched,
        so an orchestrator that re-delivers a step changes nothing.
        """
        record = await self.store.load(run_id)
        if record is None:
            raise RunNotFoundError(run_id)
        if record.seq != expect_seq or record.status in TERMINAL_STATUSES:
            return record
        run = self._reopen(await self.store.claim(run_id))
        await run.step()
        return run.record

    def _reopen(self, record: RunRecord) -> Run:
        if record.status in TERMINAL_STATUSES:
            raise RunFinishedError(
                f"run {record.id!r} already ended ({record.status}, {record.stop_reason}); "
                "start a new run instead"
            )
        compiled = self.workflow(record.workflow)
        data = record.data
        if compiled.data_type is not None:
            data = converter.structure(record.data, compiled.data_type)
        return Run(self, compiled, record, data, resumed=True)

    # -- background work --------------------------------------------------------------------

    def spawn_background(self, run: Run) -> None:
        """Run a run's background states in a task the engine tracks."""
        task = asyncio.get_running_loop().create_task(run.run_background())
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The run stays recorded as pending background work: resume finishes it.
            _log.error("background work stopped: %r", task.exception())

    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (as asyncio.wait)
        """Wait for background work to finish (up to `timeout` seconds)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)

    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (as asyncio.wait)
        """Drain background work, then cancel what is left (it stays recorded as pending)."""
        await self.drain(timeout)
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(set(self._background))
