"""The crash trials' worker: runs an agent's turns in a process the test kills with SIGKILL.

`python -m tests.reliability.crash_worker` is a small fork server: it imports the app once,
then reads one JSON trial per stdin line and forks a child per trial, so a trial's process
starts in milliseconds rather than paying the imports again (the resumes after the kill are
fresh `loopwright` processes). Every line on stdout is `<trial> <what>`, written in one
`write` so that children never interleave inside a line:

    <trial> pid <pid>        the child runs (the test kills this pid)
    <trial> ready            the app is open; the turns start
    <trial> state <name>     a state was entered (the child then pauses `pause_ms`)
    <trial> done | failed    every turn ran / a run failed
    <trial> exit <status>    the child is gone (reaped here: its exit code, or -signal)

`{"kill": N}` on stdin SIGKILLs trial N's child unless it is gone already: the server, which
reaps its children, is the one process that knows a pid still names its child.

A trial is `{"trial": N, "env": {...}, "agent": NAME, "turns": [[run_id, text], ...],
"pause_ms": P}`, optionally with `"pause_in": [STATE, ...]` (pause in those states only) and
`"hold": [STATE, K, MS]` (pause MS at the K-th entry into STATE, counted from 0); `env` is
applied in the child (the store URL, the model's base URL, the side-effect file). Closing
stdin ends the server once its children are gone.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import select
import signal
import sys
import threading
from typing import Any

from loopwright.adapters.wiring import App, Settings
from loopwright.schemas import Message, RunFailed, StateEntered


def say(trial: int, what: str) -> None:
    line = " ".join(what.split())  # one line, whatever an error message holds
    os.write(1, f"{trial} {line}\n".encode())


async def run_trial(spec: dict[str, Any]) -> int:
    """Run the trial's turns, one after the other (a child's whole life, unless killed)."""
    os.environ.update(spec["env"])
    trial = spec["trial"]
    entered: dict[str, int] = {}
    app = await App.open(Settings.from_env())
    try:
        agent = await app.store.get_agent(spec["agent"])
        say(trial, "ready")
        for run_id, text in spec["turns"]:
            message = Message(
                id=f"{run_id}-user",
                role="user",
                content=text,
                run_id=run_id,
                created_at=app.engine.clock.now(),
            )
            async for event in await app.turn(agent, messages=[message], run_id=run_id):
                if type(event) is StateEntered:
                    say(trial, f"state {event.state}")
                    entered[event.state] = entered.get(event.state, 0) + 1
                    # A slow consumer: the state's handler waits.
                    await asyncio.sleep(_pause(spec, event.state, entered[event.state] - 1))
                elif type(event) is RunFailed:
                    say(trial, f"failed {event.code}: {event.message}")
                    return 1
            agent = await app.store.get_agent(agent.id)
        say(trial, "done")
        return 0
    finally:
        await app.aclose()


def _pause(spec: dict[str, Any], state: str, occurrence: int) -> float:
    hold = spec.get("hold")
    if hold is not None and hold[:2] == [state, occurrence]:
        return float(hold[2]) / 1000
    only = spec.get("pause_in")
    return 0.0 if only is not None and state not in only else spec["pause_ms"] / 1000


def _child(spec: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    code = 2
    try:
        code = asyncio.run(run_trial(spec))
    except BaseException as err:  # reported, never a traceback lost in a pipe
        say(spec["trial"], f"failed {type(err).__name__}: {err}")
    finally:
        os._exit(code)  # the server's atexit handlers and buffers are not the child's


def _fork(spec: dict[str, Any], children: dict[int, int]) -> None:
    pid = os.fork()
    if pid == 0:
        _child(spec)
    children[pid] = spec["trial"]
    say(spec["trial"], f"pid {pid}")


def _handle(message: dict[str, Any], children: dict[int, int]) -> None:
    if "kill" not in message:
        _fork(message, children)
        return
    _reap(children)  # a child reaped here is gone: its pid may belong to anything now
    for pid, trial in children.items():
        if trial == message["kill"]:
            os.kill(pid, signal.SIGKILL)


def _reap(children: dict[int, int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        say(children.pop(pid), f"exit {os.waitstatus_to_exitcode(status)}")


_WARM = (
    # What a turn imports on first use: paid once here, before any fork, not per trial.
    "loopwright.adapters.llm.openai_llm",
    "loopwright.adapters.storage.sql",
    "loopwright.adapters.tools.python",
    "loopwright.workflows.agent.handlers",
    "tests.reliability.crash_tools",
    "anyio._backends._asyncio",
    "difflib",
    "docstring_parser",
    "h11",
    "httpcore2",
    "truststore",
)


def _warm() -> None:
    for name in _WARM:
        importlib.import_module(name)
    from loopwright.adapters.tools.python import PythonToolbox
    from loopwright.engine.validate import load_and_validate
    from loopwright.workflows import registry, workflow_path

    load_and_validate(workflow_path(), registry())
    PythonToolbox.from_modules(["tests.reliability.crash_tools"])
    if threading.active_count() != 1:  # a thread would be copied half-way into each child
        raise RuntimeError(f"the fork server must not run threads: {threading.enumerate()}")


def serve() -> None:
    """Read trials from stdin and fork one child each, until stdin closes."""
    _warm()
    children: dict[int, int] = {}
    pending = b""
    stdin = sys.stdin.fileno()
    while True:
        _reap(children)  # polled: a SIGCHLD handler would interrupt the children's fork
        if not select.select([stdin], [], [], 0.005)[0]:
            continue
        data = os.read(stdin, 65536)
        if not data:
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                _handle(json.loads(line), children)
    while children:  # stdin is closed: report the last children as they end
        pid, status = os.waitpid(-1, 0)
        say(children.pop(pid), f"exit {os.waitstatus_to_exitcode(status)}")


if __name__ == "__main__":
    serve()
