"""Search spaces for tuning (`adaptflow run --tune`), declared next to each strategy's params as
`SEARCH` (a class attribute) and overridable per strategy in params (`tune.spaces`). Plain data:
the tuner (tasks/training/tuning.py) turns each entry into an Optuna suggestion."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Range:
    """A number between low and high; log: sampled on a log scale (rates); integer: whole numbers."""
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self):
        if not self.low < self.high:
            raise ValueError(f"a range needs low < high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")


@dataclass(frozen=True)
class Choice:
    """One of a few values (ranks, virtual-token counts, epochs)."""
    values: tuple

    def __post_init__(self):
        if not self.values:
            raise ValueError("a choice needs at least one value")


Space = Range | Choice


def parse_space(name: str, raw: Any) -> Space:
    """One `tune.spaces` entry: {low, high[, log, integer]} or {choices: [...]} (or a plain list)."""
    if isinstance(raw, list):
        raw = {"choices": raw}
    if not isinstance(raw, dict):
        raise ValueError(f"{name}: give {{low: .., high: ..[, log: true]}} or {{choices: [..]}}, not {raw!r}")
    if "choices" in raw:
        if set(raw) != {"choices"} or not isinstance(raw["choices"], list):
            raise ValueError(f"{name}: {{choices: [..]}} takes a list and nothing else")
        return Choice(tuple(raw["choices"]))
    unknown = sorted(set(raw) - {"low", "high", "log", "integer"})
    if unknown or not {"low", "high"} <= set(raw):
        raise ValueError(f"{name}: a range takes low, high, log, integer (got {', '.join(sorted(raw))})")
    try:
        return Range(float(raw["low"]), float(raw["high"]), bool(raw.get("log", False)), bool(raw.get("integer", False)))
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc


def space_of(params: Any, overrides: dict[str, Any] | None = None) -> dict[str, Space]:
    """The strategy's declared space with `tune.spaces.<strategy>` on top. The learning rate is
    always searched: where a strategy declares no range, a decade either side of its configured
    rate. A name that is not one of its params is refused (a typo would otherwise tune nothing)."""
    from dataclasses import fields

    known = {f.name for f in fields(params)}
    space = dict(getattr(params, "SEARCH", {}))
    if "learning_rate" in known and "learning_rate" not in space:
        space["learning_rate"] = Range(params.learning_rate / 10, min(params.learning_rate * 10, 0.5), log=True)
    for name, raw in (overrides or {}).items():
        if name not in known:
            raise ValueError(f"{name} is not a setting of this strategy; known: {', '.join(sorted(known))}")
        space[name] = parse_space(name, raw)
    return space
