import numpy as np
import pytest

from tasks.evaluation.metrics import accuracy, macro_f1


def test_accuracy_known_answer():
    assert accuracy(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])) == 0.75


def test_macro_f1_known_answer():
    # class 0: tp=2 fp=1 fn=0 -> 0.8; class 1: tp=1 fp=0 fn=1 -> 2/3; mean 0.7333
    y_true, y_pred = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
    assert macro_f1(y_true, y_pred, 2) == pytest.approx((0.8 + 2 / 3) / 2)


def test_macro_f1_majority_predictor_is_penalised():
    y_true = np.array([1] * 9 + [0])
    assert macro_f1(y_true, np.ones(10, dtype=int), 2) == pytest.approx((0 + 18 / 19) / 2)


def test_accuracy_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        accuracy(np.array([]), np.array([]))


def test_tightest_limit():
    from tasks.training.run import tightest_limit

    assert tightest_limit(0, 0) == 0 and tightest_limit(64, 300) == 64 and tightest_limit(0, 300) == 300


def test_a_metric_declared_once_is_computed_recorded_and_read_by_selection():
    """Brier was added with one catalogue declaration and one function: it is in what every
    classification run records, computed on both splits, and selection reads its direction."""
    import numpy as np

    from tasks.evaluation.metric_functions import brier, probability_metrics
    from tasks.evaluation.selection import improvement
    from tasks.tasktypes.metrics import recorded

    assert {"val_brier", "test_brier"} <= set(recorded("classification"))
    assert "test_brier" not in recorded("generation")
    probs, y = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]), np.array([0, 0, 0])
    assert brier(probs, y) == pytest.approx((0 + 0.5 + 2) / 3)
    out = probability_metrics({"val": (probs, y), "test": (probs[:1], y[:1])})
    assert out["val_brier"] == pytest.approx(0.8333, abs=1e-4) and out["test_brier"] == 0.0
    assert improvement("val_brier", 0.2, 0.3) == pytest.approx(0.1)   # lower is better
    assert improvement("val_accuracy", 0.2, 0.3) == pytest.approx(-0.1)


def test_selection_reads_the_direction_of_the_metric():
    from tasks.evaluation.selection import choose

    named = [("a", {"val_brier": 0.30, "artifact_bytes": 1.0}), ("b", {"val_brier": 0.10, "artifact_bytes": 2.0})]
    assert choose(named, "val_brier", tolerance_points=1.0).choice == "b"
    assert choose(named, "val_brier", tolerance_points=25.0).choice == "a"   # within 20 points, and cheaper
