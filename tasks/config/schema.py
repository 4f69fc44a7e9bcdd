"""How a params section becomes a typed, validated dataclass: one parser for every section."""
from __future__ import annotations

import copy
from dataclasses import fields
from typing import TypeVar

from tasks.errors import UserError

T = TypeVar("T")


class SettingsError(ValueError, UserError):
    """A setting in params.yaml (or a profile, or the command line) is wrong."""


def require(cond: bool, message: str) -> None:
    """A section's `__post_init__` check; the parser prefixes the section's name."""
    if not cond:
        raise ValueError(message)


def parse_section(cls: type[T], raw: dict | None, name: str) -> T:
    """`raw` (a params section, None = all defaults) -> `cls`; an unknown key or a bad value is a
    SettingsError naming `name.key` and the known keys."""
    raw = dict(raw or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SettingsError(
            f"params: unknown key(s) {', '.join(name + '.' + k for k in unknown)}; "
            f"known keys in '{name}': {', '.join(sorted(known))}"
        )
    try:
        return cls(**raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"params: section '{name}': {exc}") from exc


def merge(base: dict, override: dict) -> dict:
    """`override` on top of `base`, recursively for dicts (a profile on the defaults)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
