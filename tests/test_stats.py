"""Known answers for the decision statistics."""
import numpy as np
import pytest

from tasks.evaluation.metrics import accuracy
from tasks.evaluation.selection import Candidate, pareto_front, recommend
from tasks.evaluation.statistics import bootstrap_ci, mcnemar, reliability


def test_ece_known_answer():
    # 4 predictions at confidence 0.9 (3 right) and 4 at 0.6 (2 right):
    # ECE = 0.5*|0.75-0.9| + 0.5*|0.5-0.6| = 0.075 + 0.05 = 0.125
    probs = np.array([[0.1, 0.9]] * 4 + [[0.4, 0.6]] * 4)
    y = np.array([1, 1, 1, 0, 1, 1, 0, 0])
    r = reliability(probs, y, n_bins=15)
    assert r.ece == pytest.approx(0.125)
    assert r.bin_count == [4, 4] and r.bin_accuracy == [0.5, 0.75]


def test_ece_of_a_perfectly_calibrated_predictor_is_zero():
    probs = np.array([[0.0, 1.0]] * 5)
    assert reliability(probs, np.ones(5, dtype=int)).ece == 0.0


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    pred = np.where(rng.random(2000) < 0.8, y, 1 - y)
    low, high = bootstrap_ci(y, pred, accuracy, n_resamples=500)
    assert low < accuracy(y, pred) < high
    # binomial standard error at p=0.8, n=2000 is 0.0089: a 95 % interval is about ±0.0175
    assert (high - low) == pytest.approx(2 * 1.96 * np.sqrt(0.8 * 0.2 / 2000), rel=0.15)
    small = bootstrap_ci(y[:200], pred[:200], accuracy, n_resamples=500)
    assert small[1] - small[0] > high - low


def test_mcnemar_known_answers():
    # 10 disagreements, all favouring A: two-sided exact p = 2 * 0.5**10
    a = np.array([True] * 10 + [True] * 5)
    b = np.array([False] * 10 + [True] * 5)
    r = mcnemar(a, b)
    assert (r.only_a_correct, r.only_b_correct) == (10, 0)
    assert r.p_value == pytest.approx(2 / 1024)
    assert mcnemar(a, a).p_value == 1.0
    balanced = mcnemar(np.array([True, False] * 5), np.array([False, True] * 5))
    assert balanced.p_value == pytest.approx(1.0)


def test_pareto_front():
    points = {"full": (100.0, 0.82), "lora": (0.3, 0.816), "prompt": (0.02, 0.69),
              "zero": (0.0, 0.66), "bad": (50.0, 0.70)}
    assert pareto_front(points) == ["zero", "prompt", "lora", "full"]


def test_recommendation_picks_the_cheapest_close_enough():
    cands = [Candidate("full_finetune", 0.818, 1.0, 90.9e6, 164),
             Candidate("lora", 0.816, 0.0033, 0.31e6, 203),
             Candidate("prompt_tuning", 0.691, 0.0002, 0.025e6, 215)]
    rec = recommend(cands, tolerance_points=1.0)
    assert rec.choice == "lora"
    assert rec.sentence == ("lora: within 0.2 validation points of full_finetune with 0.3 % of the trainable "
                            "parameters and 0.3 % of the storage")
    assert recommend(cands, tolerance_points=0.1).choice == "full_finetune"


def test_recommendation_respects_budgets():
    cands = [Candidate("a", 0.9, 1.0, 100e6, 10, {"val_ece": 0.2, "forgetting_delta": 3.0}),
             Candidate("b", 0.8, 0.01, 1e6, 10, {"val_ece": 0.05, "forgetting_delta": 0.5})]
    rec = recommend(cands, budgets={"max_ece": 0.1})
    assert rec.choice == "b" and rec.reasons[0] == "a: val_ece 0.2 is over max_ece=0.1"
    assert recommend(cands, budgets={"max_forgetting": 1.0}).choice == "b"
    assert recommend(cands, budgets={"max_ece": None, "max_forgetting": 5.0}).choice == "a"
    assert recommend(cands, budgets={"max_artifact_bytes": 0.5e6}).choice == "none"


def test_per_class_known_answer():
    from tasks.evaluation.statistics import per_class

    precision, recall, cm = per_class(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), 2)
    assert cm.tolist() == [[1, 1], [1, 2]]
    assert precision == [0.5, 2 / 3] and recall == [0.5, 2 / 3]


def test_overfitting_flag():
    from tasks.evaluation.statistics import overfitting

    steps = [100, 200, 300]
    assert overfitting(list(zip(steps, [0.6, 0.4, 0.2])), list(zip(steps, [0.5, 0.45, 0.55])))
    assert not overfitting(list(zip(steps, [0.6, 0.4, 0.2])), list(zip(steps, [0.5, 0.45, 0.40])))
    assert not overfitting(list(zip(steps, [0.6, 0.4, 0.5])), list(zip(steps, [0.5, 0.45, 0.55])))


def test_prompt_variant_intervals_bracket_the_mean_over_variants():
    """test_accuracy of a prompting strategy is the mean over its variants; its interval must
    be the interval of that mean, not of one variant's accuracy."""
    from tasks.evaluation.metrics import accuracy
    from tasks.evaluation.quality import variant_mean_intervals

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    good = np.where(rng.random(300) < 0.85, y, 1 - y)     # ~0.85
    weak = np.where(rng.random(300) < 0.60, y, 1 - y)     # ~0.60
    preds = np.stack([good, weak, weak], axis=1)
    mean = np.mean([accuracy(y, preds[:, v]) for v in range(3)])
    ci = variant_mean_intervals(y, preds, 2, seed=0)
    assert ci["test_accuracy_ci_low"] < mean < ci["test_accuracy_ci_high"]
    assert ci["test_accuracy_ci_high"] < accuracy(y, good)   # the best variant alone is outside it
