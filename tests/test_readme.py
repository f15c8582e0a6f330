"""The README's embedding example runs as written (against the fake server on loopback)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from loopwright.adapters.llm.fake_server import FakeOpenAIServer
from loopwright.engine.testing.chunks import text_reply

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


async def test_the_embedding_example_streams_a_reply(tmp_path: Path) -> None:
    example = next(b for b in python_blocks() if "App.open" in b)
    (tmp_path / "example.py").write_text(example, encoding="utf-8")
    async with FakeOpenAIServer([text_reply("Hello from the README.")]) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LOOPWRIGHT_"))}
        env.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="k",
                   LOOPWRIGHT_DATABASE_URL=f"sqlite:///{tmp_path / 'readme.db'}")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "example.py", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert out.decode() == "Hello from the README."
    assert server.requests[0].body["messages"][-1] == {"role": "user", "content": "Hello!"}


def test_the_generic_engine_example_runs(tmp_path: Path) -> None:
    import subprocess

    example = next(b for b in python_blocks() if "parse_workflow" in b)
    (tmp_path / "engine_example.py").write_text(example, encoding="utf-8")
    out = subprocess.run([sys.executable, "engine_example.py"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "Hello, Ada!"
    assert "RunFinished(stop_reason='final')" in out.stdout
