"""Read workflow files (TOML, YAML, JSON) into `Workflow`, reporting every problem with its place.

Parsing and structuring are the only steps here; semantic checks live in `validate`. Every
failure is a `WorkflowError` whose problems are located in the file's own terms: a line and a
column for syntax errors, a dotted key path (`states.stream.retry.attempts`) for the rest.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from loopwright.schemas import Workflow, converter

from ._locate import join_path, located, paths_by_id, structuring_problems
from ._yaml import parse_yaml
from .errors import Problem, WorkflowError

Format = Literal["toml", "yaml", "json"]

_SUFFIXES: dict[str, Format] = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}
_TOML_POSITION = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)$")
_TOML_DUPLICATE = ("Cannot overwrite", "twice", "Duplicate")
_PACKAGE = "loopwright.workflows"
_PACKAGED_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def format_of(path: str | os.PathLike[str]) -> Format:
    """The format a file name implies: `.yaml`/`.yml`, `.json`, else TOML."""
    return _SUFFIXES.get(Path(path).suffix.lower(), "toml")


def load_workflow(path: str | os.PathLike[str]) -> Workflow:
    """Read and structure a workflow file. Raises: WorkflowError (unreadable, bad syntax, shape)."""
    source = os.fspath(path)
    return parse_workflow(_read_text(Path(path), source), format_of(path), source)


def parse_workflow(text: str, fmt: Format = "toml", source: str = "<string>") -> Workflow:
    """Parse `text` in `fmt` and structure it. Raises: WorkflowError."""
    return structure_workflow(parse_document(text, fmt, source), source)


def parse_document(text: str, fmt: Format = "toml", source: str = "<string>") -> dict[str, Any]:
    """Parse `text` into plain data, refusing duplicate keys. Raises: WorkflowError."""
    parsers = {"toml": _parse_toml, "json": _parse_json, "yaml": parse_yaml}
    if fmt not in parsers:
        raise WorkflowError(
            [Problem("", f"unknown format {fmt!r}; use toml, yaml or json")], source
        )
    try:
        data = parsers[fmt](text)
    except RecursionError:
        problem = Problem("", "the document is nested too deeply to be a workflow file")
        raise WorkflowError([problem], source) from None
    except WorkflowError as err:
        raise WorkflowError(err.problems, source) from None
    if not isinstance(data, dict):
        problem = Problem(
            "", f"a workflow file must be a table at the top level, got {_kind(data)}"
        )
        raise WorkflowError([problem], source)
    return data


def structure_workflow(data: Any, source: str = "<string>") -> Workflow:
    """Structure plain data into a `Workflow`, reporting every problem. Raises: WorkflowError."""
    try:
        workflow: Workflow = converter.structure(data, Workflow)
    except Exception as err:  # cattrs raises builtins and exception groups of them
        raise WorkflowError(structuring_problems(err), source) from None
    return workflow


def packaged_workflow_path(name: str) -> Path:
    """Path of the workflow `<name>.toml` shipped in `loopwright.workflows`.

    Raises: FileNotFoundError (naming the workflows that exist).
    """
    if _PACKAGED_NAME.fullmatch(name):
        resource = resources.files(_PACKAGE).joinpath(f"{name}.toml")
        if resource.is_file():
            return Path(str(resource))
    known = ", ".join(packaged_workflows()) or "none"
    raise FileNotFoundError(f"no packaged workflow {name!r} (packaged: {known})")


def packaged_workflows() -> list[str]:
    """Names of the workflows shipped in `loopwright.workflows`."""
    root = resources.files(_PACKAGE)
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir() if p.name.endswith(".toml"))


def _read_text(path: Path, source: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        problem = Problem("", "no such file")
    except IsADirectoryError:
        problem = Problem("", "is a directory, not a workflow file")
    except OSError as err:
        problem = Problem("", f"cannot read the file: {err.strerror or err}")
    else:
        return _decode(raw, source)
    raise WorkflowError([problem], source)


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        start = err.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line = raw.count(b"\n", 0, start) + 1
        column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
        problem = located(line, column, f"not valid UTF-8 ({err.reason}); save the file as UTF-8")
        raise WorkflowError([problem], source) from None


def _parse_toml(text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        match = _TOML_POSITION.search(message)
        if match is not None:
            message = message[: match.start()]
        if any(word in message for word in _TOML_DUPLICATE):
            message += " (a key or table is defined twice; keep one)"
        if match is not None and match.group(1):
            problem = located(int(match.group(1)), int(match.group(2)), message)
        else:
            problem = Problem("end of document" if match else "", message)
        raise WorkflowError([problem]) from None


def _parse_json(text: str) -> Any:
    duplicates: list[tuple[dict[str, Any], str]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                duplicates.append((obj, key))
            obj[key] = value
        return obj

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as err:
        raise WorkflowError([located(err.lineno, err.colno, err.msg)]) from None
    if duplicates:
        paths = paths_by_id(data)
        raise WorkflowError(
            [
                Problem(join_path(paths.get(id(obj), ()), key), "duplicate key; keep one")
                for obj, key in duplicates
            ]
        )
    return data


def _kind(value: Any) -> str:
    names = {list: "a list", str: "a string", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)
