"""CLI verbs for agents: `agent create|list|messages`, `chat`, `demo`, `runs`, `resume`.

Heavy modules (the SDK, SQLAlchemy) are imported inside the verbs, never at CLI start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any, TextIO


def add_parsers(sub: Any) -> None:
    """Register the verbs on the CLI's subparsers."""
    agent = sub.add_parser("agent", help="create and inspect agents")
    agent_sub = agent.add_subparsers(dest="agent_cmd", required=True)
    create = agent_sub.add_parser("create", help="create an agent")
    create.add_argument("name")
    create.add_argument("--model", default="gpt-4o-mini")
    create.add_argument("--system", default="You are a helpful voice assistant. Be brief.")
    create.add_argument("--block", action="append", default=[], metavar="LABEL=VALUE")
    create.add_argument("--tools", action="append", default=[], metavar="MODULE")
    create.add_argument("--workflow", default="low_latency_agent", metavar="FILE")
    create.add_argument("--tenant", default="", help="owning tenant (the server's API keys)")
    create.add_argument(
        "--template",
        action="store_true",
        help="a template: the server makes one agent per session from it",
    )
    create.set_defaults(func=cmd_agent_create)
    listing = agent_sub.add_parser("list", help="list agents")
    listing.set_defaults(func=cmd_agent_list)
    messages = agent_sub.add_parser("messages", help="print an agent's stored message log")
    messages.add_argument("name")
    messages.add_argument("--json", action="store_true", help="one JSON object per line")
    messages.set_defaults(func=cmd_agent_messages)

    chat = sub.add_parser("chat", help="talk to an agent (one turn with -m, else interactive)")
    chat.add_argument("name")
    chat.add_argument("-m", "--message", default=None)
    chat.add_argument("--json", action="store_true", help="one JSON object per event")
    chat.add_argument(
        "--max-input-chars",
        type=int,
        default=32_000,
        metavar="N",
        help="refuse a longer message before storing or sending it",
    )
    chat.set_defaults(func=cmd_chat)

    demo = sub.add_parser("demo", help="run a tool-calling turn with no key and no network")
    demo.add_argument("--database", default=None, help="SQLite file (default: a temp dir)")
    demo.add_argument("-m", "--message", default="What's the weather in Paris?")
    demo.set_defaults(func=cmd_demo)

    runs = sub.add_parser(
        "runs",
        help="list runs, newest first: one per line, its id first",
        description="One run per line, tab-separated, no header: id, workflow, status, state, "
        "stop reason, key (`-` when none).",
    )
    runs.add_argument(
        "--unfinished", action="store_true", help="only runs to resume (running or background)"
    )
    runs.add_argument(
        "--limit", type=int, default=None, help="at most N runs (default: 50; all unfinished)"
    )
    runs.set_defaults(func=cmd_runs)
    resume = sub.add_parser(
        "resume",
        help="resume unfinished runs (exit 0 when they finish, 1 when one fails)",
        description="Continue each run from its last checkpoint, one after the other, "
        "streaming its text; the run's lease moves to this process, so a worker still writing "
        "it is fenced off. Every unfinished run: "
        "`loopwright runs --unfinished | cut -f1 | xargs loopwright resume`.",
    )
    resume.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    resume.set_defaults(func=cmd_resume)


def _fail(message: str) -> int:
    print(f"loopwright: {message}", file=sys.stderr)
    return 1


def _blocks(pairs: Sequence[str]) -> list[Any]:
    from loopwright.schemas import Block

    blocks = []
    for pair in pairs:
        label, sep, value = pair.partition("=")
        if not sep or not label.strip():
            raise ValueError(f"--block {pair!r}: expected LABEL=VALUE, e.g. --block human=Ada")
        blocks.append(Block(label=label.strip(), value=value))
    return blocks


def cmd_agent_create(args: argparse.Namespace) -> int:
    """`loopwright agent create NAME ...`."""
    from loopwright.schemas import Agent

    try:
        blocks = _blocks(args.block)
    except ValueError as err:
        return _fail(str(err))

    async def create(app: Any) -> int:
        agent = Agent(
            id=app.engine.ids.new_id("agent"),
            name=args.name,
            model=args.model,
            system=args.system,
            workflow=args.workflow,
            tools=tuple(args.tools),
            tenant=args.tenant,
            is_template=args.template,
            created_at=app.engine.clock.now(),
        )
        created = await app.create_agent(agent, blocks)
        print(f"created agent {created.name} ({created.id})")
        return 0

    return _with_app(create)


def cmd_agent_list(args: argparse.Namespace) -> int:
    """`loopwright agent list`."""

    async def listing(app: Any) -> int:
        for agent in await app.store.list_agents():
            print(f"{agent.name}\t{agent.id}\t{agent.model}\t{agent.workflow}")
        return 0

    return _with_app(listing)


def message_json(message: Any) -> dict[str, Any]:
    """The `agent messages --json` shape of one stored message."""
    return {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "tool_calls": [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls
        ],
        "tool_call_id": message.tool_call_id,
        "name": message.name,
        "run_id": message.run_id,
        "incomplete": message.incomplete,
    }


def cmd_agent_messages(args: argparse.Namespace) -> int:
    """`loopwright agent messages NAME [--json]`."""
    import orjson

    async def show(app: Any) -> int:
        agent = await app.store.get_agent(args.name)
        for message in await app.store.list_messages(agent.id):
            if args.json:
                sys.stdout.write(orjson.dumps(message_json(message)).decode() + "\n")
            else:
                text = message.content or ", ".join(
                    f"{c.name}({c.arguments})" for c in message.tool_calls
                )
                print(f"{message.role:>9}: {text}")
        return 0

    return _with_app(show)


async def print_run(run: Any, *, as_json: bool, out: TextIO, show_states: bool = False) -> int:
    """Stream a run's events to `out`: text as it arrives, or one JSON object per event."""
    import orjson

    from loopwright.schemas import RunFailed, StateEntered, TextDelta, event_to_dict

    failed: RunFailed | None = None
    wrote = False
    async for event in run:
        if as_json:
            out.write(orjson.dumps(event_to_dict(event)).decode() + "\n")
            out.flush()
        elif type(event) is TextDelta:
            out.write(event.text)
            out.flush()
            wrote = True
        elif show_states and type(event) is StateEntered:
            print(f"\n[{event.state}]" if wrote else f"[{event.state}]", file=sys.stderr)
            wrote = False
        if type(event) is RunFailed:
            failed = event
    if not as_json:
        out.write("\n")
        out.flush()
    if failed is not None:
        print(f"loopwright: run failed: {failed.code}: {failed.message}", file=sys.stderr)
        return 1
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """`loopwright chat NAME [-m TEXT] [--json]`."""

    async def one(app: Any, text: str) -> int:
        if len(text) > args.max_input_chars:
            return _fail(
                f"the message holds {len(text)} characters, more than --max-input-chars "
                f"{args.max_input_chars}; nothing was stored or sent"
            )
        async with app.hold(args.name) as agent:  # one writer per agent, as the server
            return await print_run(await app.turn(agent, text), as_json=args.json, out=sys.stdout)

    async def chat(app: Any) -> int:
        if args.message is not None:
            return await one(app, args.message)
        await app.store.get_agent(args.name)
        code = 0
        while True:
            try:
                text = await asyncio.to_thread(input, "you> ")
            except EOFError:
                print()
                return code
            if text.strip():
                code = await one(app, text)

    return _with_app(chat)


_EVERY = 1 << 62
"""`--unfinished` lists every run to resume: a bound no store reaches."""


def cmd_runs(args: argparse.Namespace) -> int:
    """`loopwright runs [--unfinished]`: one run per line, its id first, no header."""
    limit = args.limit if args.limit is not None else _EVERY if args.unfinished else 50

    async def runs(app: Any) -> int:
        for rec in await app.store.list_runs(unfinished=args.unfinished, limit=limit):
            print(
                f"{rec.id}\t{rec.workflow}\t{rec.status}\t{rec.state}\t"
                f"{rec.stop_reason or '-'}\t{rec.key or '-'}"
            )
        return 0

    return _with_app(runs)


def cmd_resume(args: argparse.Namespace) -> int:
    """`loopwright resume RUN_ID...`: exit 0 when every run finishes, 1 when one fails or
    cannot be resumed (unknown, already ended, its workflow not found); the others still run."""

    async def resume(app: Any) -> int:
        code = 0
        for run_id in args.run_ids:
            code = max(code, await _resume_one(app, run_id))
        return code

    return _with_app(resume)


async def _resume_one(app: Any, run_id: str) -> int:
    from loopwright.engine import LoopwrightError

    try:
        rec = await app.store.load(run_id)
        if rec is None:
            return _fail(f"no run {run_id!r}; list them with `loopwright runs --unfinished`")
        problem = await _load_workflow(app, rec)
        if problem is not None:
            return _fail(problem)
        run = await app.engine.resume(run_id)
    except LoopwrightError as err:
        return _fail(f"run {run_id!r}: {err}")
    return await print_run(run, as_json=False, out=sys.stdout)


async def _load_workflow(app: Any, rec: Any) -> str | None:
    """Load the workflow of an agent's run when it is not the packaged loop (a copy the agent
    names by path): the run record keeps only the workflow's name, the agent keeps the file.
    Returns what is wrong when it cannot be found."""
    try:
        app.engine.workflow(rec.workflow)
        return None
    except LookupError:
        pass
    named = "no agent"
    if rec.key:
        agent = await app.store.get_agent(rec.key)
        named = f"its agent names {agent.workflow!r}"
        if app.workflow(agent.workflow).name == rec.workflow:
            return None
    return (
        f"run {rec.id!r} runs workflow {rec.workflow!r}, which is not packaged ({named}); "
        "restore the workflow file the run started with, then resume it again"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """`loopwright demo`: the scripted server on loopback, a SQLite file, one tool-call turn."""
    from .demo import run_demo

    return asyncio.run(run_demo(database=args.database, message=args.message))


def _with_app(body: Any) -> int:
    from loopwright.engine import LoopwrightError

    async def main() -> int:
        from .wiring import App

        app = await App.open()
        try:
            return int(await body(app))
        finally:
            await app.aclose()

    try:
        return asyncio.run(main())
    except LoopwrightError as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        return 130
