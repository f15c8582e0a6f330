"""The one cattrs converter: workflow files, run records, messages and events."""

from __future__ import annotations

from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.strategies import configure_tagged_union

from . import events as ev
from .workflow import Branch, StateDef

converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

_SCALARS = (bool, int, float, str)


def _structure_scalar(value: Any, type_: Any) -> Any:
    # Params are plain TOML/JSON scalars; keep their own type instead of coercing.
    if isinstance(value, _SCALARS):
        return value
    raise TypeError(f"expected a boolean, number or string, got {type(value).__name__}")


def _structure_int_or_name(value: Any, type_: Any) -> Any:
    if value is None or (isinstance(value, int | str) and not isinstance(value, bool)):
        return value
    raise TypeError(f"expected an integer or a param name, got {type(value).__name__}")


def _strict(kind: type) -> Any:
    # cattrs' defaults coerce (`str(3)`, `int("5")`); a config file deserves the exact type.
    def hook(value: Any, _: Any) -> Any:
        if type(value) is kind or (kind is float and type(value) is int):
            return value
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__} {value!r}")

    return hook


for _kind in (str, int, float, bool):
    converter.register_structure_hook(_kind, _strict(_kind))
converter.register_structure_hook(bool | int | float | str, _structure_scalar)


def _structure_int_or_name_required(value: Any, type_: Any) -> Any:
    if value is None:
        raise TypeError("expected an integer or a param name, got null")
    return _structure_int_or_name(value, type_)


def _structure_names(value: Any, _: Any) -> tuple[str, ...]:
    # A bare string or a table would be iterated into characters or keys: refuse them.
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected a list of strings, got {type(value).__name__} {value!r}")
    bad = [v for v in value if type(v) is not str]
    if bad:
        raise TypeError(f"expected a list of strings, got {bad[0]!r} in it")
    return tuple(value)


converter.register_structure_hook(int | str | None, _structure_int_or_name)
converter.register_structure_hook(int | str, _structure_int_or_name_required)
converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _structure_names)

_branch_structure = make_dict_structure_fn(
    Branch, converter, if_=override(rename="if"), _cattrs_forbid_extra_keys=True
)
converter.register_structure_hook(Branch, _branch_structure)
converter.register_unstructure_hook(
    Branch,
    make_dict_unstructure_fn(
        Branch,
        converter,
        if_=override(rename="if", omit_if_default=True),
        unless=override(omit_if_default=True),
    ),
)


def _structure_branches(value: Any, _: Any) -> tuple[Branch, ...]:
    # `on.x = "target"`, `on.x = {to=...}` and `on.x = [{...}, ...]` all mean a branch list.
    if isinstance(value, str):
        return (Branch(to=value),)
    if isinstance(value, dict):
        return (_branch_structure(value, Branch),)
    if isinstance(value, list):
        if not value:
            raise ValueError("an outcome needs at least one branch")
        return tuple(
            _structure_branches(v, None)[0] if isinstance(v, str) else _branch_structure(v, Branch)
            for v in value
        )
    raise TypeError(f"expected a state name, a branch table or a list of them, got {value!r}")


converter.register_structure_hook_func(lambda t: t == tuple[Branch, ...], _structure_branches)

_state_structure = make_dict_structure_fn(StateDef, converter, _cattrs_forbid_extra_keys=True)


def _structure_state(value: Any, _: Any) -> StateDef:
    # `next = X` is sugar for the outcome `next`; both forms at once is an error.
    if isinstance(value, dict) and "next" in value:
        value = dict(value)
        target = value.pop("next")
        raw_on = value.get("on", {})
        if not isinstance(raw_on, dict):
            raise TypeError(f"`on` must be a table of outcomes, got {type(raw_on).__name__}")
        on = dict(raw_on)
        if "next" in on:
            raise ValueError("both `next` and `on.next` are given; keep one")
        on["next"] = target
        value["on"] = on
    return _state_structure(value, StateDef)


converter.register_structure_hook(StateDef, _structure_state)

configure_tagged_union(ev.Event, converter, tag_name="type")


def event_to_dict(event: ev.Event) -> dict[str, Any]:
    """Unstructure an event with its `type` tag (for `--json` output and logs)."""
    data: dict[str, Any] = converter.unstructure(event, ev.Event)
    return data
