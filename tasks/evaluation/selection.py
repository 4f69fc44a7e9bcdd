"""Choosing among strategies, as pure functions: the Pareto front of quality against cost, the
budgets (`project.budgets`) and the recommendation. One rule, `recommend`, picks both what the
report recommends and what the registry registers, on validation scores: the test split only
reports. The registry gate applies the same budgets through `over_budget`."""
from __future__ import annotations

from dataclasses import dataclass, field

from tasks.tasktypes.metrics import budget_key
from tasks.tasktypes.metrics import budgets as budget_metrics
from tasks.tasktypes.metrics import find


def higher_is_better(key: str) -> bool:
    """The catalogue's direction for a logged metric name (a name it does not know: higher)."""
    found = find(key)
    return found is None or found[0].higher_is_better


def improvement(key: str, new: float, old: float) -> float:
    """How much better `new` is than `old` in `key`'s direction (negative: worse)."""
    return new - old if higher_is_better(key) else old - new


def over_budget(metrics: dict[str, float], budgets: dict[str, float | None]) -> list[str]:
    """Reasons the candidate breaks a budget (empty: within every measured budget)."""
    broken, declared = [], budget_metrics()
    for budget, limit in budgets.items():
        if limit is None:
            continue
        metric, unit = budget_key(budget), declared[budget].unit
        if metric in metrics and metrics[metric] > limit:
            broken.append(f"{metric} {metrics[metric]:g}{unit} is over {budget}={limit:g}{unit}")
    return broken


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names not dominated on (cost: lower is better, quality: higher is better)."""
    front = []
    for name, (cost, quality) in points.items():
        dominated = any(c <= cost and q >= quality and (c < cost or q > quality)
                        for other, (c, q) in points.items() if other != name)
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: points[n][0])


@dataclass(frozen=True)
class Candidate:
    name: str
    score: float                 # the selection metric on validation (project.select_metric's val_ twin)
    trainable_fraction: float
    artifact_bytes: float
    train_seconds: float
    # What the budgets are checked against (val_ece, latency_ms_p95, artifact_bytes,
    # forgetting_delta): the same rule as the registry gate.
    metrics: dict[str, float] = field(default_factory=dict)
    higher_is_better: bool = True    # the selection metric's direction (the catalogue's)

    @property
    def merit(self) -> float:
        """The score oriented so that more is better."""
        return self.score if self.higher_is_better else -self.score


@dataclass(frozen=True)
class Recommendation:
    choice: str
    sentence: str
    reasons: list[str]


def candidates(named: list[tuple[str, dict[str, float]]], key: str) -> list[Candidate]:
    """(name, metrics) pairs as candidates scored on `key`, among those scored on the run's
    whole validation subset (few_shot may score fewer examples: its score is not comparable);
    those without `key` are left out."""
    scored = [(n, m) for n, m in named if key in m]
    most = max((m.get("val_examples", 0.0) for _, m in scored), default=0.0)
    return [Candidate(n, m[key], m.get("trainable_fraction", 0.0), m.get("artifact_bytes", 0.0),
                      m.get("train_seconds", 0.0), m, higher_is_better(key))
            for n, m in scored if m.get("val_examples", 0.0) == most]


def choose(named: list[tuple[str, dict[str, float]]], key: str, tolerance_points: float = 1.0,
           budgets: dict[str, float | None] | None = None, label: str = "accuracy") -> Recommendation:
    """The one rule the report's recommendation and the registry's candidate both come from."""
    found = candidates(named, key)
    if not found:   # every strategy failed, or a run from before validation scores were logged
        return Recommendation("none", f"No strategy has a validation score ({key}) to choose on", [])
    rec = recommend(found, tolerance_points, budgets, label)
    most = found[0].metrics.get("val_examples", 0.0)
    left_out = [f"{n}: scored on {m.get('val_examples', 0.0):.0f} validation examples, not {most:.0f}; not compared"
                for n, m in named if key in m and m.get("val_examples", 0.0) != most]
    return Recommendation(rec.choice, rec.sentence, left_out + rec.reasons)


def recommend(candidates: list[Candidate], tolerance_points: float = 1.0,
              budgets: dict[str, float | None] | None = None, label: str = "accuracy") -> Recommendation:
    """Among the strategies inside every budget (applied exactly as the registry gate applies
    them), the best score, then the cheapest (storage, then training time) within
    `tolerance_points` points of it. Scores are validation scores: nothing here reads test."""
    if not candidates:
        raise ValueError("no strategy to recommend")
    reasons, allowed = [], []
    for c in candidates:
        broken = over_budget(c.metrics | {"artifact_bytes": c.artifact_bytes}, budgets or {})
        if broken:
            reasons.append(f"{c.name}: " + "; ".join(broken))
        else:
            allowed.append(c)
    if not allowed:
        return Recommendation("none", "No strategy fits the budgets: " + "; ".join(reasons), reasons)
    best = max(allowed, key=lambda c: c.merit)
    close = [c for c in allowed if 100 * (best.merit - c.merit) <= tolerance_points + 1e-9]
    choice = min(close, key=lambda c: (c.artifact_bytes, c.train_seconds))
    if choice is best:
        sentence = f"{best.name}: the best validation {label} ({100 * best.score:.1f}) within the budgets"
    else:
        gap = 100 * (best.merit - choice.merit)
        params = 100 * choice.trainable_fraction / best.trainable_fraction if best.trainable_fraction else 0.0
        storage = 100 * choice.artifact_bytes / best.artifact_bytes if best.artifact_bytes else 0.0
        sentence = (f"{choice.name}: within {gap:.1f} validation points of {best.name} with {params:.1f} % of "
                    f"the trainable parameters and {storage:.1f} % of the storage")
    reasons.append(f"best validation {label}: {best.name} {100 * best.score:.1f}; within {tolerance_points} points: "
                   + ", ".join(c.name for c in close) + f"; cheapest of those to store: {choice.name}")
    return Recommendation(choice.name, sentence, reasons)
