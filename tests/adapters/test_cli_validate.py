"""`loopwright validate` and `loopwright graph`: in-process, as a real process, and fuzzed."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from loopwright.adapters.cli import default_registry, main
from loopwright.engine.testing.workflow_strategies import to_toml, valid_workflows

SPIN = "loopwright.engine.testing.workflow_strategies:spin"
VALID = textwrap.dedent(f"""
    name = "spinner"
    initial = "spin"

    [guards.enough]
    counter = "visits.spin"
    at_least = 3

    [states.spin]
    handler = "{SPIN}"
    background = true
    on.again = [{{ to = "done", if = "enough" }}, "spin"]

    [states.done]
    final = true
""")
INVALID = VALID.replace('"spin"]', '"spni"]').replace("at_least = 3", 'at_least = "three"')


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {"valid": tmp_path / "valid.toml", "invalid": tmp_path / "invalid.toml"}
    paths["valid"].write_text(VALID)
    paths["invalid"].write_text(INVALID)
    return paths


def test_a_valid_file_prints_ok(files: dict[str, Path]) -> None:
    assert run("validate", str(files["valid"])) == (0, "ok\n", "")


def test_every_problem_is_one_located_line(files: dict[str, Path]) -> None:
    code, out, err = run("validate", str(files["invalid"]), str(files["valid"]))
    assert code == 1
    assert err == ""
    path = str(files["invalid"])
    assert out.splitlines() == [
        f'{path}: guards.enough.at_least: unknown param "three"; define it under [params]',
        f'{path}: states.spin.on.again[1]: unknown state "spni"; did you mean "spin"?',
    ]


def test_the_same_file_in_yaml_and_json(files: dict[str, Path], tmp_path: Path) -> None:
    from loopwright.engine.loader import parse_document

    data = parse_document(VALID)
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "w.json").write_text(json.dumps(data))
    assert run("validate", str(tmp_path / "w.yaml"), str(tmp_path / "w.json"))[:2] == (0, "ok\n")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        (b'name = "a"\n\xff\n', "line 2, column 1: not valid UTF-8"),
        (b"name = = 1\n", "line 1, column 8: "),
        (b"", "name: missing; this key is required"),
    ],
    ids=["missing", "encoding", "syntax", "empty"],
)
def test_bad_files_are_problems_not_tracebacks(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "wf.toml"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run("validate", str(path))
    assert code == 1
    assert out.startswith(f"{path}: {expected}")
    assert err == ""


def test_a_directory_is_a_problem(tmp_path: Path) -> None:
    assert run("validate", str(tmp_path)) == (
        1,
        f"{tmp_path}: is a directory, not a workflow file\n",
        "",
    )


def test_packaged_workflows_validate_by_name() -> None:
    assert run("validate", "low_latency_agent")[:2] == (0, "ok\n")


def test_the_default_registry_is_the_packaged_workflows_one() -> None:
    assert "agent.stream" in default_registry().handlers


def test_usage_errors_exit_2() -> None:
    assert run()[0] == 2
    assert run("validate")[0] == 2
    assert run("frobnicate")[0] == 2


def test_graph_prints_mermaid(files: dict[str, Path]) -> None:
    code, out, err = run("graph", str(files["valid"]))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert "    spin --> done: again [if enough]" in lines
    assert "    spin --> spin: again" in lines
    assert "    [*] --> spin" in lines
    assert "    done --> [*]" in lines


def test_graph_of_an_invalid_file_prints_its_problems(files: dict[str, Path]) -> None:
    code, out, err = run("graph", str(files["invalid"]))
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 2
    assert all(line.startswith(f"{files['invalid']}: ") for line in err.splitlines())


def test_the_installed_console_script(files: dict[str, Path]) -> None:
    script = Path(sys.executable).parent / "loopwright"
    done = subprocess.run(
        [str(script), "validate", str(files["valid"]), str(files["invalid"])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stdout.splitlines()[0].startswith(f"{files['invalid']}: guards.enough.at_least: ")
    graph = subprocess.run(
        [str(script), "graph", str(files["valid"])],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert graph.stdout.startswith("stateDiagram-v2\n")


# -- fuzz ------------------------------------------------------------------------------------

SUFFIXES = st.sampled_from([".toml", ".yaml", ".json", ".txt"])


def _edited(text: str) -> st.SearchStrategy[str]:
    """`text` with a slice replaced by random text: mostly-valid files, broken somewhere."""
    return st.tuples(st.integers(0, len(text)), st.integers(0, 40), st.text(max_size=8)).map(
        lambda t: text[: t[0]] + t[2] + text[t[0] + t[1] :]
    )


@st.composite
def workflow_texts(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(SUFFIXES)
    if draw(st.booleans()):
        return suffix, draw(st.binary(max_size=200))
    if draw(st.booleans()):
        return suffix, draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    raw = draw(valid_workflows(max_states=3)).raw
    text = {".toml": to_toml, ".json": json.dumps, ".yaml": yaml.safe_dump}.get(suffix, to_toml)(
        raw
    )
    return suffix, draw(_edited(text)).encode("utf-8", "surrogatepass")


@given(case=workflow_texts())
def test_arbitrary_files_never_produce_a_traceback(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[str, bytes]
) -> None:
    suffix, content = case
    path = tmp_path_factory.mktemp("fuzz") / f"wf{suffix}"
    path.write_bytes(content)
    code, out, err = run("validate", str(path))
    assert err == ""
    if code == 0:
        assert out == "ok\n"
        return
    assert code == 1
    lines = out.splitlines()
    assert lines
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert not any("internal error" in line for line in lines)
