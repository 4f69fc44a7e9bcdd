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
