"""The project's one strict settings base, and step parameter models derived from the rules themselves.

Every settings object in Mixlab (the spec and its sections, each step's parameters, the MinHash config) is a
:class:`StrictModel`: an unknown key is an error, instances are frozen, numbers are never read from strings
(``"100"`` is not 100, ``true`` is not 1) and ``.inf``/``.nan`` are rejected. An int is accepted where a float
is expected, because YAML writes ``1`` for 1.0.

A document filter's parameters are its constructor's parameters, so its model is derived from the rule with
:func:`params_model`. Names, types and defaults come from the dataclass fields or the factory's signature;
constraints and meanings come from ``Annotated[type, Field(...)]`` on those same fields. There is one
definition, and direct Python construction (``LengthFilter(min_chars=5)``) works as before. Abstract
collection types (``Iterable[str]``, ``Sequence[str]``, ``tuple[str, ...]``) become lists, which is how YAML
writes them. Corpus stages are Beam transforms, so their models are written out in ``filters/`` (importable
without Beam), and the transforms are built from a validated model.

A parameter marked :func:`internal` is filled in by the run (``quality.trained``, ``decontam.index_path``):
the model accepts it, a spec file may not set it.
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import inspect
import types
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

M = TypeVar("M", bound=BaseModel)

INTERNAL = "internal"  # json_schema_extra flag of a parameter the run fills in
_SKIPPED = frozenset({"name", "stage", "self"})  # a rule's display name and a stage's number are not settings
_LISTS = (abc.Iterable, abc.Sequence, abc.Collection, abc.Set, list, set, frozenset)


class StrictModel(BaseModel):
    """Base of every settings model: unknown keys forbidden, frozen, no string-to-number coercion, finite floats."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def internal(description: str) -> Any:
    """``Field`` of a parameter the run fills in (accepted by the model, rejected in a spec file)."""
    return Field(description=description, json_schema_extra={INTERNAL: True})


def is_internal(info: FieldInfo) -> bool:
    """True for a field declared with :func:`internal`."""
    return isinstance(info.json_schema_extra, dict) and bool(info.json_schema_extra.get(INTERNAL))


def user_fields(model: type[BaseModel]) -> list[str]:
    """The parameters a spec may set (every field but the internal ones), in declaration order."""
    return [name for name, info in model.model_fields.items() if not is_internal(info)]


def given(params: BaseModel) -> dict[str, Any]:
    """The explicitly set parameters, so a factory keeps its own defaults and its "not given" logic."""
    return {name: getattr(params, name) for name in params.model_fields if name in params.model_fields_set}


# ---------------------------------------------------------------------------------------------- validation

def problems(model: type[BaseModel], params: Mapping[str, Any], step: str, *,
             user: bool = False) -> list[InitErrorDetails]:
    """What is wrong with ``params`` for ``model``, as pydantic line errors located relative to the params.

    An unknown key is an ``unknown_parameter`` error listing the step's parameters. With ``user`` (the params
    come from a spec file) an internal parameter is an ``internal_parameter`` error.
    """
    out: list[InitErrorDetails] = []
    if user:
        for key in params:
            info = model.model_fields.get(key)
            if info is not None and is_internal(info):
                out.append({"type": PydanticCustomError("internal_parameter",
                                                        "set by the run, not by a spec ({step} takes: {known})",
                                                        {"step": step, "known": ", ".join(user_fields(model))}),
                            "loc": (key,), "input": params[key]})
    try:
        model.model_validate(dict(params))
    except ValidationError as err:
        for item in err.errors(include_url=False):
            if item["type"] == "extra_forbidden":
                known = ", ".join(user_fields(model)) if len(item["loc"]) == 1 else ""
                out.append({"type": PydanticCustomError(
                    "unknown_parameter", "unknown parameter ({step} takes: {known})" if known else "unknown parameter",
                    {"step": step, "known": known}), "loc": item["loc"], "input": item["input"]})
            elif item["type"] == "literal_error" and len(item["loc"]) == 1:
                out.append({"type": PydanticCustomError(
                    "literal_error", "unknown {key} {value}; expected {expected}",
                    {"key": str(item["loc"][0]), "value": repr(item["input"]), "expected": item["ctx"]["expected"]}),
                    "loc": item["loc"], "input": item["input"]})
            else:
                out.append({"type": item["type"], "loc": item["loc"], "input": item["input"],
                            **({"ctx": item["ctx"]} if "ctx" in item else {})})  # type: ignore[typeddict-item]
    return out


class ParamError(ValueError):
    """Bad parameters for a step, one ``key: problem`` per line after the step's name."""


def describe(errors: list[InitErrorDetails], title: str) -> list[str]:
    """``key: message`` for each line error (messages as pydantic renders them)."""
    rendered = ValidationError.from_exception_data(title, errors).errors(include_url=False)
    return [f"{'.'.join(str(p) for p in e['loc']) or '<params>'}: {e['msg'].removeprefix('Value error, ')}"
            for e in rendered]


def check(model: type[M], params: M | Mapping[str, Any] | None, step: str) -> M:
    """``params`` validated into ``model`` (an instance passes through); a problem raises :class:`ParamError`."""
    if isinstance(params, model):
        return params
    try:
        return model.model_validate(dict(params or {}))
    except ValidationError:
        found = problems(model, dict(params or {}), step)
    raise ParamError(f"{step}: " + "; ".join(describe(found, model.__name__)))


def resolve(model: type[M], params: M | Mapping[str, Any] | None, settings: Mapping[str, Any], step: str) -> M:
    """A factory's parameters given either as a validated model or as keyword settings (not both)."""
    if params is not None and settings:
        raise ParamError(f"{step}: give a {model.__name__} or keyword parameters, not both")
    return check(model, params if params is not None else settings, step)


# ---------------------------------------------------------------------------------------------- derivation

def _yaml_type(tp: Any) -> Any:
    """The same type with abstract collections as lists (YAML's sequences), inside unions and Annotated too."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return Annotated[(_yaml_type(args[0]), *tp.__metadata__)]
    if origin in (Union, types.UnionType):
        return Union[tuple(_yaml_type(a) for a in args)]  # noqa: UP007 (a runtime-built union)
    if origin in _LISTS and len(args) == 1:
        return list[_yaml_type(args[0])]  # type: ignore[misc]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return list[_yaml_type(args[0])]  # type: ignore[misc]
    return tp


def _constructor_params(target: Callable[..., Any]) -> list[tuple[str, Any]]:
    """``(name, default or FieldInfo with a default_factory / required)`` of a rule's settable parameters."""
    if dataclasses.is_dataclass(target):
        out = []
        for f in dataclasses.fields(target):
            if not f.init or f.name in _SKIPPED or f.name.startswith("_"):
                continue
            if f.default is not dataclasses.MISSING:
                out.append((f.name, f.default))
            elif f.default_factory is not dataclasses.MISSING:
                out.append((f.name, Field(default_factory=f.default_factory)))
            else:
                out.append((f.name, ...))
        return out
    out = []
    for p in inspect.signature(target).parameters.values():
        if p.name in _SKIPPED or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        out.append((p.name, ... if p.default is p.empty else p.default))
    return out


def params_model(target: Callable[..., Any], name: str, *, defaults: Mapping[str, Any] | None = None,
                 doc: str | None = None) -> type[StrictModel]:
    """A :class:`StrictModel` whose fields are ``target``'s constructor parameters.

    ``target`` is a dataclass, a class (its ``__init__``) or a factory function. Each field's type (with the
    ``Field`` constraints and description in its ``Annotated``) and default are the constructor's own;
    ``defaults`` overrides some defaults (a factory such as ``mc4_badwords`` that presets a rule).
    """
    hints_of = target.__init__ if inspect.isclass(target) and not dataclasses.is_dataclass(target) else target
    hints = get_type_hints(hints_of, include_extras=True)
    fields: dict[str, Any] = {}
    for field_name, default in _constructor_params(target):
        if defaults and field_name in defaults:
            default = defaults[field_name]
        fields[field_name] = (_yaml_type(hints.get(field_name, Any)), default)
    unknown = set(defaults or {}) - set(fields)
    if unknown:
        raise TypeError(f"{name}: defaults for unknown parameter(s) {sorted(unknown)}")
    module = getattr(target, "__module__", __name__)
    model = create_model(name, __base__=StrictModel, __module__=module, **fields)
    model.__doc__ = doc or (inspect.getdoc(target) or "").split("\n\n")[0]
    return model
