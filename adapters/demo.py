"""`loopwright demo`: a tool-calling turn on embedded defaults, no key and no network."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


async def run_demo(*, database: str | None, message: str) -> int:
    """Start the scripted OpenAI-compatible server, create the demo agent, run one turn."""
    from loopwright.adapters.llm.fake_server import FakeOpenAIServer
    from loopwright.schemas import Agent, Block

    from .cli_agent import print_run
    from .wiring import App, Settings

    folder = None if database else tempfile.TemporaryDirectory(prefix="loopwright-demo-")
    path = Path(database) if database else Path(folder.name) / "demo.db"  # type: ignore[union-attr]
    try:
        async with FakeOpenAIServer() as server:
            settings = Settings(
                database_url=f"sqlite+aiosqlite:///{path}",
                base_url=server.base_url,
                api_key="demo-no-key-needed",
            )
            app = await App.open(settings)
            try:
                agent = await app.store.list_agents()
                demo = next((a for a in agent if a.name == "demo"), None)
                if demo is None:
                    demo = await app.create_agent(
                        Agent(
                            id=app.engine.ids.new_id("agent"),
                            name="demo",
                            model="demo",
                            system="You are the loopwright demo agent.",
                            tools=("loopwright.adapters.tools.demo",),
                        ),
                        [Block(label="human", value="A developer trying loopwright.")],
                    )
                print(
                    f"loopwright demo: scripted OpenAI-compatible server at {server.base_url}",
                    file=sys.stderr,
                )
                print(f"loopwright demo: agent 'demo' in {path}", file=sys.stderr)
                print(f"you> {message}", file=sys.stderr)
                run = await app.turn("demo", message)
                code = await print_run(run, as_json=False, out=sys.stdout, show_states=True)
                print(
                    f"loopwright demo: states visited: {' -> '.join(run.record.visited)}"
                    f" -> {run.record.state} ({run.record.stop_reason})",
                    file=sys.stderr,
                )
                return code
            finally:
                await app.aclose()
    finally:
        if folder is not None:
            folder.cleanup()
