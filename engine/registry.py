"""Handler, guard, hook and data-type registry; `module:function` references are imported."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from attrs import field, frozen

from .errors import ResolveError

F = TypeVar("F", bound=Callable[..., Any])

_SPEC_ATTR = "__loopwright_handler__"


@frozen(kw_only=True)
class HandlerSpec:
    """A handler with what it declares: its outcomes and the params it reads."""

    fn: Callable[..., Any]
    """`async def h(ctx) -> Outcome | str` or an async generator ending with its outcome."""
    outcomes: frozenset[str]
    """Every outcome the handler may return."""
    params: Mapping[str, type] = field(factory=dict)
    """Params the handler reads, with their types (validated against the file)."""
    streaming: bool = False
    """True for an async generator handler."""
    name: str = ""
    """Reference it was resolved from."""


def handler(
    *, outcomes: Iterable[str], params: Mapping[str, type] | None = None
) -> Callable[[F], F]:
    """Declare a function as a handler with its outcomes (checked against workflow files)."""

    def mark(fn: F) -> F:
        if not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
            raise TypeError(
                f"handler {fn.__qualname__} must be `async def` (a coroutine or async generator)"
            )
        setattr(
            fn,
            _SPEC_ATTR,
            HandlerSpec(
                fn=fn,
                outcomes=frozenset(outcomes),
                params=dict(params or {}),
                streaming=inspect.isasyncgenfunction(fn),
                name=f"{fn.__module__}:{fn.__qualname__}",
            ),
        )
        return fn

    return mark


def _import_ref(ref: str, kind: str) -> Any:
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ResolveError(
            f"{kind} {ref!r} is neither a registered name nor `package.module:function`"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ResolveError(f"{kind} {ref!r}: cannot import module {module_name!r} ({err})") from err
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as err:
            raise ResolveError(
                f"{kind} {ref!r}: module {module_name!r} has no attribute {attr!r}"
            ) from err
    return obj


class Registry:
    """Names a workflow file may refer to. Unknown names fall back to `module:attr` imports."""

    def __init__(self) -> None:
        self.handlers: dict[str, HandlerSpec] = {}
        self.guards: dict[str, Callable[[Any], bool]] = {}
        self.hooks: dict[str, Callable[[Any], None]] = {}
        self.data_types: dict[str, type] = {}

    def add_handler(self, name: str, fn: Callable[..., Any]) -> None:
        """Register a handler decorated with `@handler(outcomes=...)`."""
        self.handlers[name] = _spec_of(fn, name)

    def add_guard(self, name: str, fn: Callable[[Any], bool]) -> None:
        """Register a `(ctx) -> bool` guard."""
        self.guards[name] = fn

    def add_hook(self, name: str, fn: Callable[[Any], None]) -> None:
        """Register a `(ctx) -> None` hook."""
        self.hooks[name] = fn

    def add_data_type(self, name: str, cls: type) -> None:
        """Register an attrs class for run data."""
        self.data_types[name] = cls

    def merged(self, other: Registry) -> Registry:
        """A new registry with `other`'s names added (theirs win)."""
        out = Registry()
        for attr in ("handlers", "guards", "hooks", "data_types"):
            getattr(out, attr).update(getattr(self, attr))
            getattr(out, attr).update(getattr(other, attr))
        return out

    def resolve_handler(self, ref: str) -> HandlerSpec:
        """Return the handler spec. Raises: ResolveError."""
        if ref in self.handlers:
            return self.handlers[ref]
        return _spec_of(_import_ref(ref, "handler"), ref)

    def resolve_guard(self, ref: str) -> Callable[[Any], bool]:
        """Return a guard callable. Raises: ResolveError."""
        fn = self.guards.get(ref) or _import_ref(ref, "guard")
        if not callable(fn):
            raise ResolveError(f"guard {ref!r} is not callable")
        return fn

    def resolve_hook(self, ref: str) -> Callable[[Any], None]:
        """Return a hook callable. Raises: ResolveError."""
        fn = self.hooks.get(ref) or _import_ref(ref, "hook")
        if not callable(fn) or inspect.iscoroutinefunction(fn):
            raise ResolveError(
                f"hook {ref!r} must be a plain (synchronous) callable `(ctx) -> None`"
            )
        return fn

    def resolve_data_type(self, ref: str) -> type:
        """Return the run data class. Raises: ResolveError."""
        cls = self.data_types.get(ref) or _import_ref(ref, "data type")
        if not isinstance(cls, type):
            raise ResolveError(f"data type {ref!r} is not a class")
        return cls


def _spec_of(fn: Any, ref: str) -> HandlerSpec:
    spec = getattr(fn, _SPEC_ATTR, None)
    if not isinstance(spec, HandlerSpec):
        raise ResolveError(
            f"handler {ref!r} does not declare its outcomes; decorate it with "
            "`@loopwright.engine.handler(outcomes=[...])`"
        )
    return spec
