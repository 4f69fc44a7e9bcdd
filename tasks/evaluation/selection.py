"""Choosing among strategies, as pure functions: the Pareto front of quality against cost, the
budgets (`project.budgets`) and the recommendation. The registry gate applies the same
budgets through `over_budget`."""
from __future__ import annotations

from dataclasses import dataclass, field

from tasks.config import BUDGET_METRICS


def over_budget(metrics: dict[str, float], budgets: dict[str, float | None]) -> list[str]:
    """Reasons the candidate breaks a budget (empty: within every measured budget)."""
    broken = []
    for budget, limit in budgets.items():
        if limit is None:
            continue
        metric, unit = BUDGET_METRICS[budget]
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
    accuracy: float
    trainable_fraction: float
    artifact_bytes: float
    train_seconds: float
    # What the budgets are checked against (test_ece, latency_ms_p95, artifact_bytes,
    # forgetting_delta): the same rule as the registry gate.
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Recommendation:
    choice: str
    sentence: str
    reasons: list[str]


def recommend(candidates: list[Candidate], tolerance_points: float = 1.0,
              budgets: dict[str, float | None] | None = None, label: str = "accuracy") -> Recommendation:
    """The cheapest strategy (storage, then training time) whose accuracy is within
    `tolerance_points` accuracy points of the best, among those inside the budgets (the
    project's budgets, applied exactly as the registry gate applies them)."""
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
    best = max(allowed, key=lambda c: c.accuracy)
    close = [c for c in allowed if 100 * (best.accuracy - c.accuracy) <= tolerance_points + 1e-9]
    choice = min(close, key=lambda c: (c.artifact_bytes, c.train_seconds))
    if choice is best:
        sentence = (f"{best.name}: the most accurate ({100 * best.accuracy:.1f} %) within the budgets"
                    if label == "accuracy" else f"{best.name}: the best {label} ({100 * best.accuracy:.1f}) within the budgets")
    else:
        gap = 100 * (best.accuracy - choice.accuracy)
        params = 100 * choice.trainable_fraction / best.trainable_fraction if best.trainable_fraction else 0.0
        storage = 100 * choice.artifact_bytes / best.artifact_bytes if best.artifact_bytes else 0.0
        sentence = (f"{choice.name}: within {gap:.1f} points of {best.name} with {params:.1f} % of "
                    f"the trainable parameters and {storage:.1f} % of the storage")
    reasons.append(f"best {label}: {best.name} {100 * best.accuracy:.1f}; within {tolerance_points} points: "
                   + ", ".join(c.name for c in close) + f"; cheapest of those to store: {choice.name}")
    return Recommendation(choice.name, sentence, reasons)
