"""Metric functions registered by name: a catalogue metric (tasks/tasktypes/metrics.py) whose
value is a function of a split's class probabilities and true labels is computed here, on every
split it is declared for, for every strategy. Adding such a metric = its declaration in the
catalogue + one function below with `@from_probabilities("<name>")`."""
from __future__ import annotations

from typing import Callable

import numpy as np

from tasks.tasktypes import catalogue

ProbabilityMetric = Callable[[np.ndarray, np.ndarray], float]   # (probs: examples x labels, y_true) -> value
_FROM_PROBABILITIES: dict[str, ProbabilityMetric] = {}


def from_probabilities(name: str) -> Callable[[ProbabilityMetric], ProbabilityMetric]:
    def register(fn: ProbabilityMetric) -> ProbabilityMetric:
        if name not in catalogue():
            raise KeyError(f"metric function {name!r}: declare the metric in tasks/tasktypes/metrics.py first")
        _FROM_PROBABILITIES[name] = fn
        return fn
    return register


def probability_metrics(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """{split: (probs, y_true)} -> every registered probability metric on each split it is declared for."""
    out = {}
    for name, fn in _FROM_PROBABILITIES.items():
        metric = catalogue()[name]
        for split, (probs, y_true) in splits.items():
            if split in metric.splits:
                out[metric.key(split)] = float(fn(probs, y_true))
    return out


@from_probabilities("brier")
def brier(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Multi-class Brier score: mean over examples of the squared distance between the predicted
    distribution and the one-hot truth (0 is perfect, 2 the worst)."""
    onehot = np.eye(probs.shape[1])[y_true]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())
