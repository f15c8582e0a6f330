"""Start-up cost: a one-shot `loopwright chat NAME -m TEXT` against a bare `openai` SDK script.

Run: `python benchmarks/bench_startup.py [-n N] [--top K]`.

The fake OpenAI server runs once, in this process; each command is a fresh process doing one
streaming request against it (a short text reply), with `OPENAI_BASE_URL`, `OPENAI_API_KEY`
and `LOOPWRIGHT_DATABASE_URL` (a temp SQLite file where the agent was created beforehand) in
its environment. Rounds are interleaved, the order rotating; medians of wall time (spawn to
exit) and CPU (user + system, from the reaped child's rusage) are reported, with
`python -c pass` as the interpreter's floor. Bytecode is cached for the children in a temp
`PYTHONPYCACHEPREFIX` (warmed by a first untimed run of each), as an installed package has
it: this environment may set PYTHONDONTWRITEBYTECODE, which would recompile the editable
sources at every start. Then `python -X importtime` of each process: import time by top-level
package, and the modules that cost loopwright most.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from attrs import frozen

from loopwright.adapters.llm.fake_server import FakeOpenAIServer
from loopwright.adapters.wiring import App, Settings
from loopwright.engine.testing.chunks import Response, text_reply
from loopwright.schemas import Agent

TEXT = "Say hello."
REPLY = "Hello! This is the fake server answering one short turn."
AGENT = "bench"
SDK_SCRIPT = """\
import sys
import openai

client = openai.OpenAI()
stream = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": sys.argv[1]}], stream=True
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
"""


@frozen
class Sample:
    """One process: wall seconds from spawn to exit, CPU seconds (user + system)."""

    wall: float
    cpu: float


def commands(folder: Path) -> dict[str, list[str]]:
    script = folder / "bare_sdk.py"
    script.write_text(SDK_SCRIPT)
    loopwright = Path(sys.executable).with_name("loopwright")
    if not loopwright.exists():
        found = shutil.which("loopwright")
        if found is None:
            raise SystemExit("no `loopwright` command: `pip install -e .` in this environment")
        loopwright = Path(found)
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "bare openai SDK script": [sys.executable, str(script), TEXT],
        "loopwright chat -m": [str(loopwright), "chat", AGENT, "-m", TEXT],
    }


def child_env(folder: Path, base_url: str, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        PYTHONPYCACHEPREFIX=str(folder / "pycache"),
        OPENAI_BASE_URL=base_url,
        OPENAI_API_KEY="sk-bench",
        LOOPWRIGHT_DATABASE_URL=database_url,
    )
    return env


async def run(argv: Sequence[str], env: Mapping[str, str]) -> tuple[Sample, str, str]:
    """Run one process to its end; its sample, stdout and stderr. Raises: RuntimeError."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, env=dict(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}: {err.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Sample(wall, cpu), out.decode(), err.decode()


async def create_agent(settings: Settings) -> None:
    async with await App.open(settings) as app:
        ids = app.engine.ids
        await app.create_agent(
            Agent(
                id=ids.new_id("agent"),
                name=AGENT,
                model="gpt-4o-mini",
                system="You are a helpful voice assistant. Be brief.",
            )
        )


async def measure(
    rounds: int, import_runs: int, folder: Path
) -> tuple[dict[str, list[Sample]], dict[str, list[str]]]:
    """Timed rounds, then each process's `-X importtime` reports (stderr)."""

    def respond(_body: Mapping[str, Any]) -> Response:
        return text_reply(REPLY, parts=6)

    database_url = f"sqlite:///{folder / 'startup.db'}"
    async with FakeOpenAIServer(respond) as server:
        await create_agent(
            Settings(database_url=database_url, base_url=server.base_url, api_key="sk-bench")
        )
        env = child_env(folder, server.base_url, database_url)
        argvs = commands(folder)
        for name, argv in argvs.items():  # warm-up: bytecode cache, page cache; checks output
            _, out, _ = await run(argv, env)
            if name != "python -c pass" and REPLY not in out:
                raise RuntimeError(f"{name}: unexpected output {out!r}")
        samples: dict[str, list[Sample]] = {name: [] for name in argvs}
        names = list(argvs)
        for n in range(rounds):
            for name in names[n % 3 :] + names[: n % 3]:
                samples[name].append((await run(argvs[name], env))[0])
        imports: dict[str, list[str]] = defaultdict(list)
        for _ in range(import_runs):
            for name in list(argvs)[1:]:
                argv = argvs[name]
                head = argv[1:] if argv[0] == sys.executable else argv
                imports[name].append(
                    (await run([sys.executable, "-X", "importtime", *head], env))[2]
                )
    return samples, imports


# ---------------------------------------------------------------------------------------------
# -X importtime


@frozen
class Import:
    """One line of `-X importtime`: µs of the module alone, µs with its imports, depth."""

    name: str
    own: int
    cumulative: int
    depth: int


def parse_importtime(text: str) -> list[Import]:
    rows = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        own, cumulative, name = line[len("import time:") :].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append(Import(name.strip(), int(own), int(cumulative), depth))
    return rows


def by_package(rows: Sequence[Import]) -> dict[str, int]:
    """µs of import time per top-level package (each module's own time, summed)."""
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        root = row.name.split(".")[0]
        if root == "loopwright":
            root = ".".join(row.name.split(".")[:2])
        totals[root] += row.own
    return totals


def median_rows(runs: Sequence[list[Import]]) -> list[Import]:
    """Per module, the median own and cumulative µs over several runs."""
    by_name: dict[str, list[Import]] = defaultdict(list)
    for rows in runs:
        for row in rows:
            by_name[row.name].append(row)
    return [
        Import(
            name,
            int(statistics.median(r.own for r in got)),
            int(statistics.median(r.cumulative for r in got)),
            got[0].depth,
        )
        for name, got in by_name.items()
    ]


def median_packages(runs: Sequence[list[Import]]) -> dict[str, int]:
    totals = [by_package(rows) for rows in runs]
    roots = {root for t in totals for root in t}
    medians = {root: int(statistics.median(t.get(root, 0) for t in totals)) for root in roots}
    return dict(sorted(medians.items(), key=lambda kv: -kv[1]))


def report_imports(imports: Mapping[str, list[str]], top: int) -> None:
    runs = {name: [parse_importtime(text) for text in texts] for name, texts in imports.items()}
    packages = {name: median_packages(got) for name, got in runs.items()}
    sdk, ours = packages["bare openai SDK script"], packages["loopwright chat -m"]
    count = len(next(iter(imports.values())))
    print(
        f"\nimport time (-X importtime, median of {count} runs each): SDK script "
        f"{sum(sdk.values()) / 1e3:.0f} ms, loopwright {sum(ours.values()) / 1e3:.0f} ms"
    )
    print(f"{'package':36} {'loopwright ms':>13} {'SDK script ms':>13}")
    for root, micros in list(ours.items())[:top]:
        print(f"{root:36} {micros / 1e3:13.1f} {sdk.get(root, 0) / 1e3:13.1f}")
    own = {r.name: r for r in median_rows(runs["loopwright chat -m"])}
    print("\nloopwright modules by cumulative import time (ms; what importing each one pulls in)")
    ranked = sorted(
        (r for r in own.values() if r.name.startswith("loopwright")), key=lambda r: -r.cumulative
    )
    for row in ranked[:top]:
        print(f"  {row.cumulative / 1e3:7.1f}  {row.name}")
    print("\nslowest single modules in the loopwright process (own ms)")
    for row in sorted(own.values(), key=lambda r: -r.own)[:top]:
        print(f"  {row.own / 1e3:7.1f}  {row.name}")


def report(samples: Mapping[str, list[Sample]], rounds: int) -> None:
    print(f"median of {rounds} interleaved rounds, one process each (spawn to exit)")
    print(f"{'process':26} {'wall ms':>8} {'CPU ms':>8} {'wall/SDK':>9} {'CPU/SDK':>8}")
    sdk = samples["bare openai SDK script"]
    sdk_wall = statistics.median(s.wall for s in sdk)
    sdk_cpu = statistics.median(s.cpu for s in sdk)
    for name, got in samples.items():
        wall = statistics.median(s.wall for s in got)
        cpu = statistics.median(s.cpu for s in got)
        print(
            f"{name:26} {wall * 1e3:8.0f} {cpu * 1e3:8.0f} {wall / sdk_wall:9.2f} "
            f"{cpu / sdk_cpu:8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=10)
    parser.add_argument("--import-runs", type=int, default=3, help="-X importtime runs each")
    parser.add_argument("--top", type=int, default=15, help="rows in the import tables")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        samples, imports = asyncio.run(measure(args.rounds, args.import_runs, Path(folder)))
    report(samples, args.rounds)
    report_imports(imports, args.top)


if __name__ == "__main__":
    main()
