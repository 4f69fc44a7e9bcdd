"""Quality of one model on a split, and the details of the saved model's test predictions
(intervals, calibration, per-class figures). Computes only; the caller logs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from tasks.evaluation.metrics import accuracy, macro_f1
from tasks.evaluation.predict import predict_proba
from tasks.evaluation.statistics import Reliability, bootstrap_ci, per_class, reliability
from tasks.tracking import PRECISION_PREFIX, RECALL_PREFIX
from tasks.models.encoding import Encoded


@dataclass(frozen=True)
class Quality:
    accuracy: float
    macro_f1: float
    probs: np.ndarray            # examples x labels, in input order


def score(model: nn.Module, data: Encoded, num_labels: int, pad_id: int) -> Quality:
    return quality(predict_proba(model, data, pad_id), data.labels, num_labels)


def quality(probs: np.ndarray, y_true: np.ndarray, num_labels: int) -> Quality:
    y_pred = probs.argmax(1)
    return Quality(accuracy(y_true, y_pred), macro_f1(y_true, y_pred, num_labels), probs)


@dataclass(frozen=True)
class QualityDetails:
    metrics: dict[str, float]    # intervals, test_ece, per-class precision and recall
    confusion: np.ndarray        # [true, predicted]
    y_true: np.ndarray
    probs: np.ndarray
    reliability: Reliability


def quality_details(probs: np.ndarray, y_true: np.ndarray, labels: list[str], seed: int) -> QualityDetails:
    """Intervals, calibration and per-class figures of the saved model on the test split."""
    y_pred = probs.argmax(1)
    k = len(labels)
    acc_ci = bootstrap_ci(y_true, y_pred, accuracy, seed=seed)
    f1_ci = bootstrap_ci(y_true, y_pred, lambda t, p: macro_f1(t, p, k), seed=seed)
    rel = reliability(probs, y_true, n_bins=15)
    precision, recall, cm = per_class(y_true, y_pred, k)
    out = {"test_accuracy_ci_low": acc_ci[0], "test_accuracy_ci_high": acc_ci[1],
           "test_macro_f1_ci_low": f1_ci[0], "test_macro_f1_ci_high": f1_ci[1], "test_ece": rel.ece}
    for label, p, r in zip(labels, precision, recall):
        out |= {f"{PRECISION_PREFIX}{label}": p, f"{RECALL_PREFIX}{label}": r}
    return QualityDetails(out, cm, y_true, probs, rel)


def variant_mean_intervals(y_true: np.ndarray, preds: np.ndarray, num_classes: int, seed: int) -> dict[str, float]:
    """Bootstrap 95 % intervals of the mean over prompt variants (preds: examples x variants),
    resampling test examples once for all variants, so each interval brackets the logged
    test_accuracy / test_macro_f1 (ECE, the reliability diagram and the paired test describe
    the saved variant)."""
    mean_of = lambda metric: (lambda t, p: float(np.mean([metric(t, p[:, v]) for v in range(p.shape[1])])))
    acc = bootstrap_ci(y_true, preds, mean_of(accuracy), seed=seed)
    f1 = bootstrap_ci(y_true, preds, mean_of(lambda t, p: macro_f1(t, p, num_classes)), seed=seed)
    return {"test_accuracy_ci_low": acc[0], "test_accuracy_ci_high": acc[1],
            "test_macro_f1_ci_low": f1[0], "test_macro_f1_ci_high": f1[1]}
