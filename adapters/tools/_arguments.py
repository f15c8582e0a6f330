"""The arguments of a Python tool: a pydantic model and a JSON Schema derived from the signature
and docstring, and the binding of a call's JSON arguments to Python call arguments.

pydantic and docstring-parser are imported when a tool is built, not when this module is.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

from attrs import frozen

from .errors import ToolDefinitionError

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError


@frozen
class Param:
    """One parameter of a tool function."""

    field: str
    """The pydantic field name (safe whatever the parameter is called)."""
    name: str
    """The parameter name, which the model uses (the field's alias)."""
    positional: bool
    """Positional-only: passed by position."""
    none_means_default: bool
    """Has a default but rejects None: a strict-mode null means "omitted"."""


@frozen
class Arguments:
    """How the arguments of one tool are described, validated and passed."""

    model: type[BaseModel]
    """Validates the arguments (lax mode: "3" is accepted for an int, as models write it)."""
    params: tuple[Param, ...]
    """The parameters, in signature order."""
    schema: dict[str, Any]
    """JSON Schema of the arguments, with the docstring's parameter descriptions."""
    description: str
    """The docstring's summary and body, without its sections."""

    def bind(self, arguments: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Validate `arguments` into (args, kwargs). Raises: pydantic.ValidationError."""
        by_name = {p.name: p for p in self.params}
        given = {
            key: value
            for key, value in arguments.items()
            if not (value is None and key in by_name and by_name[key].none_means_default)
        }
        validated = self.model.model_validate(given)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for param in self.params:
            if param.positional:
                args.append(getattr(validated, param.field))
            elif param.name in given:
                # Omitted arguments are left out, so the function's own default applies.
                kwargs[param.name] = getattr(validated, param.field)
        return args, kwargs

    def explain(self, err: ValidationError) -> str:
        """Which argument is wrong and why, in words the model can act on."""
        problems = []
        for problem in err.errors(include_url=False):
            where = ".".join(str(part) for part in problem["loc"]) or "arguments"
            if problem["type"] == "extra_forbidden" and len(problem["loc"]) == 1:
                names = ", ".join(p.name for p in self.params) or "none"
                problems.append(f"{where}: not a parameter of this tool (parameters: {names})")
                continue
            got = "" if problem["type"] == "missing" else f" (got {problem['input']!r:.80})"
            problems.append(f"{where}: {problem['msg']}{got}")
        return "; ".join(problems)


def derive(tool_name: str, fn: Callable[..., Any]) -> Arguments:
    """The arguments of `fn`. Raises: ToolDefinitionError (a signature pydantic cannot
    describe, *args or **kwargs, an annotation that does not resolve)."""
    from pydantic import PydanticUserError

    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, ValueError, SyntaxError) as err:
        raise ToolDefinitionError(
            tool_name,
            f"cannot read the signature ({err}); annotations must name types defined at "
            "module level or imported there",
        ) from err
    description, described = _docstring(fn)
    try:
        model, params = _model(tool_name, signature, described)
        schema = _json_schema(model)
    except PydanticUserError as err:
        raise ToolDefinitionError(
            tool_name, f"pydantic cannot describe the arguments ({err}); use JSON-like types"
        ) from err
    return Arguments(model=model, params=params, schema=schema, description=description)


def _docstring(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from Google, NumPy, reST or Epydoc docstrings."""
    doc = inspect.getdoc(fn)
    if not doc:
        return "", {}
    import docstring_parser

    parsed = docstring_parser.parse(doc)
    parts = [p for p in (parsed.short_description, parsed.long_description) if p]
    described = {p.arg_name: p.description for p in parsed.params if p.description}
    return "\n\n".join(parts), described


def _model(
    tool_name: str, signature: inspect.Signature, described: Mapping[str, str]
) -> tuple[type[BaseModel], tuple[Param, ...]]:
    from pydantic import ConfigDict, Field, create_model

    fields: dict[str, Any] = {}
    params: list[Param] = []
    for index, param in enumerate(signature.parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(
                tool_name,
                f"*{param.name} / **{param.name} cannot be described to the model; "
                "list the parameters explicitly",
            )
        annotation = Any if param.annotation is param.empty else param.annotation
        has_default = param.default is not param.empty
        default = param.default if has_default else ...
        # Fields get neutral names, the model sees the parameter names (aliases): a parameter
        # may be called `schema` or `_x`, which pydantic fields cannot.
        field = f"p{index}"
        fields[field] = (
            annotation,
            Field(default, alias=param.name, description=described.get(param.name)),
        )
        params.append(
            Param(
                field=field,
                name=param.name,
                positional=param.kind is param.POSITIONAL_ONLY,
                none_means_default=has_default and not _admits_none(annotation),
            )
        )
    # Unknown arguments are refused, not ignored: the model learns about its typo.
    config = ConfigDict(extra="forbid")
    model = create_model(f"{tool_name}_arguments", __config__=config, **fields)
    return model, tuple(params)


def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    from pydantic.json_schema import GenerateJsonSchema

    class _NoFieldTitles(GenerateJsonSchema):
        # Titles repeat the property names: tokens the model pays for and never needs.
        def field_title_should_be_set(self, schema: Any) -> bool:
            return False

    schema = model.model_json_schema(schema_generator=_NoFieldTitles)
    schema.pop("title", None)
    return schema


def _admits_none(annotation: Any) -> bool:
    if annotation is Any or annotation is None or annotation is type(None):
        return True
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return any(_admits_none(arg) for arg in get_args(annotation))
    if origin is Annotated:
        return _admits_none(get_args(annotation)[0])
    return False
