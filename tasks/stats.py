"""Statistics that turn test predictions into decisions: intervals, calibration, a paired test,
the Pareto front and a recommendation in plain words. Pure functions with known-answer tests."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tasks.decisions import over_budget


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, metric: Callable[[np.ndarray, np.ndarray], float],
                 n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `metric` over resampled test examples."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("no examples to resample")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y_true), size=(n_resamples, len(y_true)))
    scores = np.array([metric(y_true[i], y_pred[i]) for i in idx])
    tail = (1 - level) / 2
    return float(np.quantile(scores, tail)), float(np.quantile(scores, 1 - tail))


@dataclass(frozen=True)
class Reliability:
    ece: float
    bin_confidence: list[float]   # mean confidence per non-empty bin
    bin_accuracy: list[float]
    bin_count: list[int]


def reliability(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> Reliability:
    """Expected calibration error over equal-width confidence bins (top-label confidence):
    sum over bins of (bin size / n) * |accuracy - mean confidence|."""
    probs, y_true = np.asarray(probs, dtype=float), np.asarray(y_true)
    confidence, predicted = probs.max(1), probs.argmax(1)
    correct = (predicted == y_true).astype(float)
    # bin i holds confidences in (i/n, (i+1)/n]; confidence 0 falls in the first bin
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece, conf, acc, count = 0.0, [], [], []
    for b in range(n_bins):
        mask = bins == b
        if not mask.any():
            continue
        c, a, m = confidence[mask].mean(), correct[mask].mean(), int(mask.sum())
        ece += m / len(y_true) * abs(a - c)
        conf.append(float(c))
        acc.append(float(a))
        count.append(m)
    return Reliability(float(ece), conf, acc, count)


@dataclass(frozen=True)
class McNemar:
    only_a_correct: int
    only_b_correct: int
    p_value: float


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact (binomial) McNemar test on paired correctness: is A's accuracy different from B's
    on the same examples? Only disagreements count."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    n01, n10 = int((a & ~b).sum()), int((~a & b).sum())
    n = n01 + n10
    if n == 0:
        return McNemar(n01, n10, 1.0)
    k = min(n01, n10)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return McNemar(n01, n10, min(1.0, 2 * tail))


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
              budgets: dict[str, float | None] | None = None) -> Recommendation:
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
        sentence = f"{best.name}: the most accurate ({100 * best.accuracy:.1f} %) within the budgets"
    else:
        gap = 100 * (best.accuracy - choice.accuracy)
        params = 100 * choice.trainable_fraction / best.trainable_fraction if best.trainable_fraction else 0.0
        storage = 100 * choice.artifact_bytes / best.artifact_bytes if best.artifact_bytes else 0.0
        sentence = (f"{choice.name}: within {gap:.1f} points of {best.name} with {params:.1f} % of "
                    f"the trainable parameters and {storage:.1f} % of the storage")
    reasons.append(f"best accuracy: {best.name} {100 * best.accuracy:.1f} %; within {tolerance_points} points: "
                   + ", ".join(c.name for c in close) + f"; cheapest of those to store: {choice.name}")
    return Recommendation(choice.name, sentence, reasons)


def per_class(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> tuple[list[float], list[float], np.ndarray]:
    """(precision per class, recall per class, confusion matrix [true, predicted])."""
    cm = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    predicted, actual = cm.sum(0), cm.sum(1)
    precision = [float(cm[c, c] / predicted[c]) if predicted[c] else 0.0 for c in range(num_classes)]
    recall = [float(cm[c, c] / actual[c]) if actual[c] else 0.0 for c in range(num_classes)]
    return precision, recall, cm


def overfitting(train_loss: list[tuple[int, float]], val_loss: list[tuple[int, float]], tol: float = 1e-3) -> bool:
    """True when, after the best validation check, validation loss rose while training loss
    fell over the same checks (the model kept learning the train set, not the task)."""
    if len(val_loss) < 2 or len(train_loss) != len(val_loss):
        return False
    best = min(range(len(val_loss)), key=lambda i: val_loss[i][1])
    if best == len(val_loss) - 1:
        return False
    return val_loss[-1][1] > val_loss[best][1] + tol and train_loss[-1][1] < train_loss[best][1] - tol
