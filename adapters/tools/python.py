"""A `Toolbox` of Python callables: schemas derived by pydantic, calls validated and bounded.

Plain annotated functions are tools as they are; `@tool(...)` only sets options. The JSON Schema
of the arguments comes from the signature (pydantic) and the docstring (docstring-parser), never
by hand. Every problem of a call becomes an error result the model can act on.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import re
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar, cast, overload

import attrs
import orjson
from attrs import frozen

from loopwright.schemas import ToolOutput, ToolSpec

from ._arguments import Arguments, derive
from .errors import ToolDefinitionError, ToolImportError

__all__ = [
    "DEFAULT_MAX_RESULT_CHARS",
    "PythonToolbox",
    "ToolDefinitionError",
    "ToolImportError",
    "ToolOptions",
    "tool",
]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MAX_RESULT_CHARS: Final = 10_000
_MIN_RESULT_CHARS: Final = 100
_OPTIONS_ATTR: Final = "__loopwright_tool__"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@frozen(kw_only=True)
class ToolOptions:
    """Options set by `@tool`; a plain function gets the defaults."""

    name: str | None = None
    """Tool name; the function's name by default."""
    description: str | None = None
    """Description for the model; the docstring (without its sections) by default."""
    idempotent: bool = False
    """Safe to run twice for one call; tools are not unless marked (the safe default)."""
    timeout: float | None = 30.0
    """Seconds per call; None for no limit."""


@overload
def tool(fn: F, /) -> F: ...


@overload
def tool(
    *,
    idempotent: bool = False,
    timeout: float | None = 30.0,
    name: str | None = None,
    description: str | None = None,
) -> Callable[[F], F]: ...


def tool(
    fn: F | None = None,
    /,
    *,
    idempotent: bool = False,
    timeout: float | None = 30.0,
    name: str | None = None,
    description: str | None = None,
) -> F | Callable[[F], F]:
    """Set tool options (`@tool` or `@tool(timeout=5)`); the result is called like the original.

    A plain function is copied, not changed, so `tool(name="b")(f)` leaves `f` as it was and one
    function can be offered under two names.
    """
    options = ToolOptions(
        name=name, description=description, idempotent=idempotent, timeout=timeout
    )

    def mark(target: F) -> F:
        marked = _copy_function(target) if isinstance(target, types.FunctionType) else target
        try:
            setattr(marked, _OPTIONS_ATTR, options)
        except AttributeError as err:
            raise ToolDefinitionError(
                repr(target), "cannot carry tool options; decorate the function itself"
            ) from err
        return marked

    return mark if fn is None else mark(fn)


def _copy_function(fn: F) -> F:
    copied = types.FunctionType(
        fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )
    copied.__dict__.update(fn.__dict__)
    copied.__kwdefaults__ = fn.__kwdefaults__
    copied.__annotations__ = dict(fn.__annotations__)
    copied.__qualname__ = fn.__qualname__
    copied.__module__ = fn.__module__
    copied.__doc__ = fn.__doc__
    return cast(F, copied)


@frozen
class _Tool:
    spec: ToolSpec
    fn: Callable[..., Any]
    arguments: Arguments
    is_async: bool


class PythonToolbox:
    """Tools from Python callables; implements the `Toolbox` port."""

    def __init__(
        self,
        callables: Iterable[Callable[..., Any]] = (),
        *,
        max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    ) -> None:
        if max_result_chars < _MIN_RESULT_CHARS:
            raise ValueError(
                f"max_result_chars={max_result_chars} leaves no room for a result; "
                f"use at least {_MIN_RESULT_CHARS}"
            )
        self._max_chars = max_result_chars
        self._tools: dict[str, _Tool] = {}
        for fn in callables:
            built = _build(fn)
            if built.spec.name in self._tools:
                raise ToolDefinitionError(
                    built.spec.name, "two tools have this name; rename one with @tool(name=...)"
                )
            self._tools[built.spec.name] = built
        self._specs = tuple(t.spec for t in self._tools.values())

    @classmethod
    def from_callables(
        cls,
        callables: Iterable[Callable[..., Any]],
        *,
        max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    ) -> PythonToolbox:
        """Tools from functions (sync or async), bound methods or callable objects."""
        return cls(callables, max_result_chars=max_result_chars)

    @classmethod
    def from_modules(
        cls, modules: Iterable[str], *, max_result_chars: int = DEFAULT_MAX_RESULT_CHARS
    ) -> PythonToolbox:
        """Tools from the public annotated functions of each module (`pkg.mod`).

        Public: listed in `__all__` when the module has one, else defined in the module with a
        name not starting with `_`. Annotated: at least one annotation, or marked with `@tool`.
        Raises: ToolImportError, ToolDefinitionError.
        """
        found: list[Callable[..., Any]] = []
        for name in modules:
            try:
                module = importlib.import_module(name)
            except Exception as err:
                raise ToolImportError(name, err) from err
            found.extend(_public_functions(module))
        return cls(found, max_result_chars=max_result_chars)

    def specs(self) -> Sequence[ToolSpec]:
        """Tools as offered to the model, in registration order."""
        return self._specs

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolOutput:
        """Run one call; every problem becomes an error result, never an exception."""
        found = self._tools.get(name)
        if found is None:
            known = ", ".join(sorted(self._tools)) or "none"
            return self._error(f"unknown tool {name!r}; the tools are: {known}")
        if not isinstance(arguments, Mapping):
            return self._error(
                f"arguments for {name!r} must be a JSON object, got {type(arguments).__name__}"
            )
        from pydantic import ValidationError

        try:
            args, kwargs = found.arguments.bind(arguments)
        except ValidationError as err:
            explained = found.arguments.explain(err)
            return self._error(f"invalid arguments for {name!r}: {explained}")
        return await self._run(found, args, kwargs)

    async def _run(self, found: _Tool, args: list[Any], kwargs: dict[str, Any]) -> ToolOutput:
        name, timeout = found.spec.name, found.spec.timeout_s
        try:
            async with asyncio.timeout(timeout) as deadline:
                if found.is_async:
                    result = await found.fn(*args, **kwargs)
                else:
                    # Sync tools run on a worker thread so the loop (other streams) keeps going.
                    result = await asyncio.to_thread(found.fn, *args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError as err:
            if not deadline.expired():
                return self._error(f"tool {name!r} failed: {_describe(err)}")
            # A thread cannot be stopped: a sync tool may still be running, so say so.
            effects = "" if found.spec.idempotent else "; it may have had effects already"
            return self._error(f"tool {name!r} timed out after {timeout:g} s{effects}")
        except Exception as err:
            return self._error(f"tool {name!r} failed: {_describe(err)}")
        return self._result(name, result)

    def _result(self, name: str, result: object) -> ToolOutput:
        try:
            # `str.__str__` is the plain text of a str subclass, without running its methods.
            text = str.__str__(result) if isinstance(result, str) else _to_json(result)
        except Exception as err:  # the result's own code (model_dump, __len__) may raise anything
            return self._error(
                f"tool {name!r} returned a {type(result).__name__}, which is not "
                f"JSON-serialisable ({_describe(err)}); the tool must return text or JSON data"
            )
        return ToolOutput(status="ok", content=_truncate(text, self._max_chars))

    def _error(self, message: str) -> ToolOutput:
        return ToolOutput(status="error", content=_truncate(message, self._max_chars))


def _public_functions(module: types.ModuleType) -> list[Callable[..., Any]]:
    exported = getattr(module, "__all__", None)
    names = list(exported) if exported is not None else list(vars(module))
    found: list[Callable[..., Any]] = []
    for name in names:
        value = getattr(module, name, None)
        if not inspect.isfunction(value):
            continue
        if exported is None and (name.startswith("_") or value.__module__ != module.__name__):
            continue
        if hasattr(value, _OPTIONS_ATTR) or value.__annotations__:
            found.append(value)
    return found


def _build(fn: Callable[..., Any]) -> _Tool:
    """Derive the spec and the arguments of one callable."""
    options: ToolOptions = getattr(fn, _OPTIONS_ATTR, ToolOptions())
    name = options.name or str(getattr(fn, "__name__", ""))
    if _NAME.fullmatch(name) is None:
        raise ToolDefinitionError(
            name or repr(fn),
            "a tool name is 1-64 letters, digits, `_` or `-`; set one with @tool(name=...)",
        )
    arguments = derive(name, fn)
    spec = ToolSpec(
        name=name,
        description=options.description
        if options.description is not None
        else arguments.description,
        parameters=arguments.schema,
        idempotent=options.idempotent,
        timeout_s=options.timeout,
    )
    # A callable object counts as async when its __call__ is.
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)
    return _Tool(spec=spec, fn=fn, arguments=arguments, is_async=is_async)


def _to_json(value: object) -> str:
    """JSON text of a tool result: JSON data, dataclasses, attrs and pydantic models, dates."""
    try:
        return orjson.dumps(value, default=_plain).decode()
    except TypeError:
        # orjson refuses integers past 64 bits, which the standard library writes.
        return json.dumps(value, default=_plain, ensure_ascii=False, allow_nan=False)


def _plain(value: object) -> object:
    dump = getattr(value, "model_dump", None)  # pydantic models, without importing pydantic
    if callable(dump):
        return dump(mode="json")
    if attrs.has(type(value)):
        return attrs.asdict(value)  # type: ignore[arg-type]
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _describe(err: BaseException) -> str:
    message = str(err)
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def _truncate(text: str, max_chars: int) -> str:
    """`text` cut to `max_chars` characters, the marker included."""
    total = len(text)
    if total <= max_chars:
        return text
    longest_marker = _marker(total, total)
    kept = max_chars - len(longest_marker)
    return text[:kept] + _marker(kept, total)


def _marker(kept: int, total: int) -> str:
    return f"\n[truncated: showing {kept} of {total} characters]"
