"""Locations in workflow files: key paths, and cattrs structuring errors turned into problems."""

from __future__ import annotations

import difflib
import json
import re
import typing
from collections.abc import Iterable, Iterator
from typing import Any

import attrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from .errors import Problem

KeyPath = tuple[object, ...]
"""Keys (text, or whatever a YAML file used) and list indexes."""

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NO_MAPPING = re.compile(r"'(\w+)' object has no attribute '(?:keys|items)'")
_NOT_ITERABLE = re.compile(r"'(\w+)' object is not iterable")
# Attribute names that files spell differently (see the converter's renames and sugar).
_FILE_NAMES = {"if_": "if"}
_EXTRA_KEYS = {"StateDef": ("next",)}
_MAX_MESSAGE = 200


def located(line: int, column: int, message: str) -> Problem:
    """A problem at a line and column (both 1-based) of the file."""
    return Problem(f"line {line}, column {column}", message)


def join_path(path: KeyPath, *more: object) -> str:
    """`states.stream.on.x`, with `[0]` for list items and quotes for unusual keys."""
    out = ""
    for part in (*path, *more):
        if isinstance(part, str) and _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        elif isinstance(part, str):
            out += f"[{quote(part)}]"
        elif isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:  # a YAML key that is not text (`null`, `true`, a date...)
            out += f"[{quote(part) if _is_json(part) else repr(part)}]"
    return out


def _is_json(value: object) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def children(node: Any) -> Iterator[tuple[object, Any]]:
    """(key, value) pairs of a dict or (index, item) pairs of a list."""
    if isinstance(node, dict):
        yield from node.items()
    elif isinstance(node, list):
        yield from enumerate(node)


def paths_by_id(data: Any) -> dict[int, KeyPath]:
    """Key path of every dict and list in `data` (the first path wins for shared YAML nodes)."""
    found: dict[int, KeyPath] = {}
    stack: list[tuple[Any, KeyPath]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in found:
            continue
        found[id(node)] = path
        stack.extend(
            (child, (*path, key)) for key, child in children(node) if isinstance(child, dict | list)
        )
    return found


def structuring_problems(err: BaseException) -> list[Problem]:
    """Every leaf of a cattrs (detailed validation) error, located by its key path."""
    problems: list[Problem] = []
    _walk(err, (), None, problems)
    return problems


def _walk(err: BaseException, path: KeyPath, type_: Any, out: list[Problem]) -> None:
    if isinstance(err, ClassValidationError):
        with_notes, without = err.group_exceptions()
        for sub, note in with_notes:
            _walk(sub, (*path, _FILE_NAMES.get(note.name, note.name)), note.type, out)
        for sub in without:
            _walk(sub, path, None, out)
    elif isinstance(err, IterableValidationError):
        items, rest = err.group_exceptions()
        for sub, inote in items:
            _walk(sub, (*path, inote.index), inote.type, out)
        for sub in rest:
            _walk(sub, path, None, out)
    elif isinstance(err, ForbiddenExtraKeysError):
        allowed = _allowed_keys(err.cl)
        for key in sorted(err.extra_fields, key=repr):
            out.append(Problem(join_path(path, key), _unknown_key(key, allowed)))
    elif isinstance(err, KeyError):
        out.append(Problem(join_path(path), "missing; this key is required"))
    else:
        out.append(Problem(join_path(path), _describe(err, type_)))


def _allowed_keys(cl: type) -> list[str]:
    if not attrs.has(cl):
        return []
    names = [_FILE_NAMES.get(a.name, a.name) for a in attrs.fields(cl)]
    return sorted([*names, *_EXTRA_KEYS.get(cl.__name__, ())])


def _unknown_key(key: object, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1) if isinstance(key, str) else []
    hint = f"; did you mean {quote(close[0])}?" if close else ""
    return f"unknown key{hint} (allowed: {', '.join(allowed)})"


def _describe(err: BaseException, type_: Any) -> str:
    text = str(err)
    if typing.get_origin(type_) is typing.Literal:
        choices = ", ".join(quote(c) for c in typing.get_args(type_))
        return f"expected one of {choices}"
    if match := _NO_MAPPING.search(text):
        return f"expected a table, got {match.group(1)}"
    if match := _NOT_ITERABLE.search(text):
        return f"expected a list, got {match.group(1)}"
    if not text:
        text = type(err).__name__
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`; did you mean \"x\"?` for the closest known name, or nothing."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean {quote(close[0])}?" if close else ""


def quote(value: object) -> str:
    """A name or value as the file would spell it: `"exec_tools"`, `3`, `true`.

    Characters that do not print (line breaks such as U+2028 among them) are escaped, so that
    a problem always stays on one line.
    """
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in text)
