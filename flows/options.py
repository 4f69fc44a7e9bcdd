"""Command-line options generated from a flow's input model (flows/inputs.py), so each option is
declared once: the field's name gives --kebab-name, its type the parsing (Literal -> choices,
bool -> a flag, list[str] -> comma-separated), its default the default and its description the
help. `Spelling` says where the command line really differs (another flag, a metavar, a
positional argument, its own default)."""
from __future__ import annotations

import argparse
import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

_KEEP = object()


@dataclass(frozen=True)
class Spelling:
    """How the command line spells a field where it differs from --kebab-name."""

    flags: tuple[str, ...] = ()   # instead of --kebab-name (the first one names it in messages);
                                  # a name without dashes: a positional argument, named as the field
    metavar: str | None = None
    default: Any = _KEEP          # the command line's own default (e.g. none where the form preselects one)


def comma_list(text: str) -> list[str] | None:
    """`a, b,` -> ['a', 'b']; nothing named -> None (the field's default)."""
    return [x.strip() for x in text.split(",") if x.strip()] or None


def flags(name: str, spelled: Spelling | None = None) -> tuple[str, ...]:
    """The option's flags (the first one names it in messages)."""
    return spelled.flags if spelled and spelled.flags else (f"--{name.replace('_', '-')}",)


def add_options(parser, model: type[BaseModel], only: tuple[str, ...] | None = None,
                spelling: dict[str, Spelling] | None = None) -> None:
    """Add the model's fields (`only` those, in that order) to a parser, an argument group or a
    mutually exclusive group."""
    for name in tuple(model.model_fields) if only is None else only:
        _add(parser, model, name, (spelling or {}).get(name, Spelling()))


def _add(parser, model: type[BaseModel], name: str, spelled: Spelling) -> None:
    field = model.model_fields[name]
    default = field.default if spelled.default is _KEEP else spelled.default
    kind = _kind(model, name, field.annotation)
    if kind.get("action") == "store_true" and default:
        raise TypeError(f"{model.__name__}.{name}: a flag that is on by default cannot be turned off")
    names = flags(name, spelled)
    if not names[0].startswith("-"):   # positional: argparse takes its name as the dest
        parser.add_argument(name, help=_help(field.description, kind, default), **kind)
        return
    extra = {"required": True} if default is PydanticUndefined else {"default": default}
    if spelled.metavar:
        extra["metavar"] = spelled.metavar
    parser.add_argument(*names, dest=name, help=_help(field.description, kind, default), **kind, **extra)


def _help(description: str, kind: dict, default: Any) -> str:
    text = f"comma-separated {description}" if kind.get("type") is comma_list else description
    if default not in (None, False, PydanticUndefined):
        text += f" (default: {default})"
    return text.replace("%", "%%")   # argparse formats help with %


def _kind(model: type[BaseModel], name: str, annotation) -> dict:
    """How argparse reads the field's type (None allowed: an option not given keeps the default)."""
    if get_origin(annotation) in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        annotation = inner[0] if len(inner) == 1 else annotation
    if annotation is bool:
        return {"action": "store_true"}
    if get_origin(annotation) is Literal:
        return {"choices": list(get_args(annotation))}
    if get_origin(annotation) is list and get_args(annotation) == (str,):
        return {"type": comma_list}
    if annotation is str:
        return {}
    if annotation in (int, float):
        return {"type": annotation}
    raise TypeError(f"{model.__name__}.{name}: no command-line form for {annotation}; spell it out in the CLI")


def values(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    """The model's fields the parsed command line holds."""
    return {name: getattr(args, name) for name in model.model_fields if hasattr(args, name)}


def build(model: type[BaseModel], fields: dict[str, Any], spelling: dict[str, Spelling] | None = None):
    """The model from the command line's values; a value it refuses is a ValueError naming the option."""
    try:
        return model(**fields)
    except ValidationError as exc:
        problems = [f"{' '.join(_where(model, e['loc'], spelling))}: {e['msg']}" for e in exc.errors()]
        raise ValueError("; ".join(problems)) from None


def _where(model: type[BaseModel], loc: tuple, spelling: dict[str, Spelling] | None) -> list[str]:
    name = str(loc[0])
    first = flags(name, (spelling or {}).get(name))[0] if name in model.model_fields else name
    return [first, *map(str, loc[1:])]
