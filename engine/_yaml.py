"""YAML workflow files: PyYAML's safe loader, made strict enough for configuration.

Changes from `yaml.SafeLoader`, each because YAML 1.1 surprises people writing workflows:
- only `true`/`false` are booleans (YAML 1.1 reads the key `on:` as `True`, which would turn
  every transition table into garbage), and dates stay strings;
- duplicate keys are problems instead of the last one silently winning;
- documents that expand (through aliases) past a size limit, or alias themselves, are refused.
PyYAML is imported on first use, so `loopwright.engine` does not import it; its libyaml parser
is used when present.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Hashable
from typing import Any

from ._locate import children, join_path, located, paths_by_id
from .errors import Problem, WorkflowError

_BOOL = "tag:yaml.org,2002:bool"
_DROPPED = {_BOOL, "tag:yaml.org,2002:timestamp"}
_MERGE = "tag:yaml.org,2002:merge"
_MAX_NODES = 100_000


def parse_yaml(text: str) -> Any:
    """Parse one YAML document. Raises: WorkflowError (syntax, duplicate keys, alias bombs)."""
    import yaml

    loader = _loader_class()(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        message = " ".join(m for m in (err.context, err.problem) if m) or str(err)
        problem = located(mark.line + 1, mark.column + 1, message) if mark else Problem("", message)
        raise WorkflowError([problem]) from None
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        raise WorkflowError([located(line, column, err.reason)]) from None
    except yaml.YAMLError as err:
        raise WorkflowError([Problem("", " ".join(str(err).split()))]) from None
    except Exception as err:  # PyYAML's constructors raise anything on bad tags (`!!int x`)
        message = f"cannot read a tagged value: {type(err).__name__}: {err}"
        raise WorkflowError([Problem("", message)]) from None
    finally:
        loader.dispose()
    _check_size(data)
    if loader.duplicates:
        paths = paths_by_id(data)
        raise WorkflowError(
            [
                Problem(
                    join_path(paths.get(id(obj), ()), key),
                    f"duplicate key ({where}); keep one",
                )
                for obj, key, where in loader.duplicates
            ]
        )
    return data


@functools.cache
def _loader_class() -> type[Any]:
    import yaml

    # libyaml's parser when PyYAML has it: much faster, and it bounds the nesting depth itself.
    base: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class StrictLoader(base):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.duplicates: list[tuple[dict[Any, Any], object, str]] = []

    def construct_map(loader: StrictLoader, node: Any) -> Any:
        data: dict[Any, Any] = {}
        yield data
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue  # merged keys may be overridden on purpose
            key = loader.construct_object(key_node)
            if isinstance(key, Hashable) and key in seen:
                mark = key_node.start_mark
                loader.duplicates.append((data, key, f"line {mark.line + 1}"))
            elif isinstance(key, Hashable):
                seen.add(key)
        data.update(loader.construct_mapping(node))

    StrictLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    StrictLoader.add_implicit_resolver(
        _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    StrictLoader.add_constructor("tag:yaml.org,2002:map", construct_map)
    return StrictLoader


def _check_size(data: Any) -> None:
    """Refuse self-referencing documents and alias bombs before anything walks them."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        node, closing = stack.pop()
        key = id(node)
        if closing:
            open_nodes.discard(key)
            total = 1 + sum(sizes.get(id(child), 1) for _, child in children(node))
            sizes[key] = min(total, _MAX_NODES + 1)
            if sizes[key] > _MAX_NODES:
                raise WorkflowError([Problem("", "the document is too large once aliases expand")])
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise WorkflowError([Problem("", "an alias refers to a node that contains it")])
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend(
            (child, False) for _, child in children(node) if isinstance(child, dict | list)
        )
