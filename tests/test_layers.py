"""The layers: imports only go down (schemas <- engine <- workflows <- adapters)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = ["schemas", "engine", "workflows", "adapters"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _sources(floor: str) -> list[Path]:
    return sorted((ROOT / floor).rglob("*.py"))


def test_engine_import_pulls_in_no_sdk_database_or_upper_floor() -> None:
    code = (
        "import sys, loopwright.engine, loopwright.engine.run, loopwright.engine.machine\n"
        "bad = [m for m in ('openai', 'sqlalchemy', 'aiohttp', 'loopwright.workflows',"
        " 'loopwright.adapters', 'hypothesis') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("floor", FLOORS)
def test_imports_only_go_down(floor: str) -> None:
    above = FLOORS[FLOORS.index(floor) + 1 :]
    offenders = []
    for path in _sources(floor):
        for module in _imports(path):
            for upper in above:
                if module == f"loopwright.{upper}" or module.startswith(f"loopwright.{upper}."):
                    offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_only_the_machine_module_imports_transitions() -> None:
    users = [
        str(path.relative_to(ROOT))
        for floor in FLOORS
        for path in _sources(floor)
        if any(m == "transitions" or m.startswith("transitions.") for m in _imports(path))
    ]
    assert users == ["engine/machine.py"]


def test_engine_and_schemas_never_import_sdks_or_databases() -> None:
    banned = ("openai", "sqlalchemy", "aiohttp", "aiosqlite", "asyncpg")
    offenders = [
        f"{path.relative_to(ROOT)}: {m}"
        for floor in ("schemas", "engine")
        for path in _sources(floor)
        for m in _imports(path)
        if m.split(".")[0] in banned
    ]
    assert offenders == []
