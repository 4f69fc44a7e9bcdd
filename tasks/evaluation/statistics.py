"""Statistics of test predictions: bootstrap intervals, calibration (reliability, ECE), a paired
test (McNemar), per-class figures and an overfitting flag. Pure functions with known-answer
tests; choosing among strategies is selection.py."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


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
