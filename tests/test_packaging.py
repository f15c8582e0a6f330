"""Packaging: the editable install and the built wheel ship `loopwright.*`, its data and its CLI.

Every check runs in a subprocess whose cwd is a temp folder outside the checkout, with PYTHONPATH
cleared, so only the installed distribution can answer an import. The wheel is built the way a
release is (`python -m build`: the sdist, then the wheel from it) from a copy of the checkout, so
the tree stays clean, and installed with its dependencies into a fresh venv. Those tests take
~15 s, so they run when `CI=true` (never skipped there) or `LOOPWRIGHT_TEST_WHEEL=1`.
"""

from __future__ import annotations

import configparser
import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest
from attrs import frozen

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "workflows", "adapters", "schemas")
MIGRATIONS = Path("adapters", "storage", "migrations")
FLAGSHIP = "low_latency_agent"
# Variables that would let the checkout (or another install) answer an import instead.
LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".*cache", ".hypothesis",
    ".mypy-tree", "node_modules", "*.db", "*.db-*", "*.sqlite3",
)  # fmt: skip

# Runs inside the install under test; prints one JSON object.
PROBE = textwrap.dedent(
    """
    import importlib, importlib.util, json
    from importlib.resources import files

    def walk(node, prefix=""):
        found = {}
        for child in node.iterdir():
            if child.is_dir():
                if child.name != "__pycache__":
                    found.update(walk(child, prefix + child.name + "/"))
            else:
                found[prefix + child.name] = child.read_text(encoding="utf-8")
        return found

    def ending(package, suffix):
        root = files(package)
        return {c.name: c.read_text(encoding="utf-8") for c in root.iterdir()
                if c.name.endswith(suffix)}

    from loopwright.adapters.storage._migrate import head_revision

    names = ("engine", "workflows", "adapters", "schemas")
    print(json.dumps({
        "modules": {n: importlib.import_module("loopwright." + n).__file__ for n in names},
        "flagship": files("loopwright.workflows").joinpath("low_latency_agent.toml")
            .read_text(encoding="utf-8"),
        "schema": files("loopwright.schemas").joinpath("workflow.schema.json")
            .read_text(encoding="utf-8"),
        "workflows": ending("loopwright.workflows", ".toml"),
        "schemas": ending("loopwright.schemas", ".json"),
        "migrations": walk(files("loopwright.adapters.storage").joinpath("migrations")),
        "head": head_revision(),
        "top_level": [n for n in names if importlib.util.find_spec(n) is not None],
    }))
    """
)


@frozen(kw_only=True)
class WheelInstall:
    """A wheel built from `src` (a copy of the checkout) and installed into `venv`."""

    src: Path
    wheel: Path
    venv: Path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(
    args: list[str | Path], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    assert not cwd.resolve().is_relative_to(ROOT), f"{cwd} must be outside the checkout {ROOT}"
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    """stdout of a command that must have succeeded (else its whole output in the failure)."""
    command = " ".join("<probe>" if arg == PROBE else str(arg) for arg in done.args)
    assert done.returncode == 0, (
        f"{command} exited {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    return done.stdout


def _texts(paths: list[Path], base: Path) -> dict[str, str]:
    return {p.relative_to(base).as_posix(): p.read_text(encoding="utf-8") for p in paths}


def _tree(base: Path) -> list[Path]:
    """Every file under `base`, bytecode caches left out."""
    return [
        p for p in base.rglob("*")
        if p.is_file() and "__pycache__" not in p.relative_to(base).parts
    ]  # fmt: skip


def _revisions(src: Path) -> set[str]:
    text = "\n".join(
        p.read_text(encoding="utf-8") for p in (src / MIGRATIONS).glob("versions/*.py")
    )
    return set(re.findall(r"^revision\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE))


def _check_install(bin_dir: Path, src: Path, cwd: Path) -> dict[str, str]:
    """Imports, package data and the CLI of the install in `bin_dir`; returns the modules' files.

    `src` is the tree the install was made from: the data read back must be its files, byte for
    byte."""
    found: dict[str, Any] = json.loads(_ok(_run([bin_dir / "python", "-c", PROBE], cwd)))
    assert found["flagship"] == (src / "workflows" / f"{FLAGSHIP}.toml").read_text("utf-8")
    assert found["schema"] == (src / "schemas" / "workflow.schema.json").read_text("utf-8")
    assert found["workflows"] == _texts(list((src / "workflows").glob("*.toml")), src / "workflows")
    assert found["schemas"] == _texts(list((src / "schemas").glob("*.json")), src / "schemas")
    assert found["migrations"] == _texts(_tree(src / MIGRATIONS), src / MIGRATIONS)
    assert {"alembic.ini", "env.py", "script.py.mako"} <= set(found["migrations"])
    assert found["head"] in _revisions(src), "Alembic must read the installed migration scripts"
    assert found["top_level"] == [], "only `loopwright.*` may be importable, never bare folders"

    script = bin_dir / "loopwright"
    usage = _ok(_run([script, "--help"], cwd))
    assert "validate" in usage
    assert "demo" in usage
    assert _ok(_run([script, "validate", FLAGSHIP], cwd)).strip() == "ok"
    modules: dict[str, str] = found["modules"]
    return modules


def test_editable_install_imports_reads_data_and_runs_the_cli(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    modules = _check_install(bin_dir, ROOT, tmp_path)
    # An editable install maps each namespace onto the checkout's folder of that name.
    assert modules == {name: str(ROOT / name / "__init__.py") for name in PACKAGES}


def _wheel_tests_enabled() -> bool:
    return (
        os.environ.get("CI", "").lower() == "true" or os.environ.get("LOOPWRIGHT_TEST_WHEEL") == "1"
    )


def _build_outputs() -> set[str]:
    return {p.name for pattern in ("build", "dist", "*.egg-info") for p in ROOT.glob(pattern)}


@pytest.fixture(scope="module")
def wheel_install(tmp_path_factory: pytest.TempPathFactory) -> WheelInstall:
    """Build the sdist and wheel from a copy of the checkout; install the wheel in a fresh venv."""
    if not _wheel_tests_enabled():
        pytest.skip(
            "building and installing the wheel takes ~15 s: CI=true or "
            "LOOPWRIGHT_TEST_WHEEL=1 runs it"
        )
    base = tmp_path_factory.mktemp("packaging")
    src, dist, venv = base / "src", base / "dist", base / "venv"
    before = _build_outputs()
    shutil.copytree(ROOT, src, ignore=COPY_IGNORE)
    _ok(_run([sys.executable, "-m", "build", "--outdir", dist, src], base, timeout=300))
    assert _build_outputs() == before, "building must not write into the checkout"
    (wheel,) = dist.glob("*.whl")
    # No pip in the venv: the outer pip installs into it (`--python`), which saves seconds.
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", venv], base))
    install: list[str | Path] = ["install", "--quiet", "--no-compile", wheel]
    _ok(
        _run(
            [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", *install],
            base,
            timeout=300,
        )
    )
    return WheelInstall(src=src, wheel=wheel, venv=venv)


@pytest.mark.slow
def test_wheel_holds_exactly_the_loopwright_tree(wheel_install: WheelInstall) -> None:
    with zipfile.ZipFile(wheel_install.wheel) as archive:
        names = archive.namelist()
    dist_info = "-".join(wheel_install.wheel.name.split("-")[:2]) + ".dist-info/"
    stray = [n for n in names if not n.startswith(("loopwright/", dist_info))]
    assert stray == [], "the wheel may hold nothing but `loopwright/` and its dist-info"
    shipped = {n.removeprefix("loopwright/") for n in names if n.startswith("loopwright/")}
    src = wheel_install.src
    expected = {p.relative_to(src).as_posix() for name in PACKAGES for p in _tree(src / name)}
    assert shipped == expected, (
        f"missing from the wheel: {sorted(expected - shipped)} (a subpackage absent from "
        f"`packages` or a pattern absent from `package-data`?); "
        f"extra: {sorted(shipped - expected)}"
    )


@pytest.mark.slow
def test_wheel_metadata_names_the_distribution_python_and_script(
    wheel_install: WheelInstall,
) -> None:
    with zipfile.ZipFile(wheel_install.wheel) as archive:
        info = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.HeaderParser().parsestr(archive.read(info).decode())
        entry_points = configparser.ConfigParser()
        scripts = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
        entry_points.read_string(scripts)
    assert metadata["Name"] == "loopwright"
    assert metadata["Requires-Python"] == ">=3.11"
    assert dict(entry_points["console_scripts"]) == {"loopwright": "loopwright.adapters.cli:main"}


@pytest.mark.slow
def test_wheel_install_imports_reads_data_and_runs_the_cli(
    wheel_install: WheelInstall, tmp_path: Path
) -> None:
    venv = wheel_install.venv
    modules = _check_install(venv / "bin", wheel_install.src, tmp_path)
    for name, file in modules.items():
        path = Path(file).resolve()
        assert path.is_relative_to(venv.resolve()), f"loopwright.{name} came from {path}"
        assert path.parts[-3:] == ("loopwright", name, "__init__.py")


@pytest.mark.slow
def test_wheel_demo_runs_offline_from_a_temp_dir(
    wheel_install: WheelInstall, tmp_path: Path
) -> None:
    # The demo starts its scripted server on loopback and runs the migrations on a new SQLite file.
    done = _run([wheel_install.venv / "bin" / "loopwright", "demo"], tmp_path)
    _ok(done)
    assert "execute_tools" in done.stderr, "the demo turn must call its tool"
