"""Learning from production, part three: drift on live inputs. Known-answer tests of the three
two-sample tests, their false-alarm rate on samples from one distribution, and the window check
through a real outcome store (stored request texts) with a deterministic stand-in embedding."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import empty_mlflow_store

from tasks.config import DriftSettings
from tasks.evaluation.drift_tests import SampleTest, drifted, label_test, length_test, mmd_test
from tasks.outcomes.store import OutcomeStore, RequestText
from tasks.release.drift import check, live_window, record


def test_mmd_known_answers():
    # Two points each, one dimension: x = {0, 0}, y = {1, 1}; bandwidth = median squared distance
    # over pairs = 1 (half the pairs are 1 apart, zero pairs are left out), so k(x, y) = e^-1 and
    # MMD² = 1 + 1 - 2 e^-1.
    result = mmd_test(np.array([[0.0], [0.0]]), np.array([[1.0], [1.0]]), permutations=5)
    assert result.statistic == pytest.approx(2 - 2 * np.exp(-1), rel=1e-5)
    rng = np.random.default_rng(3)
    same = mmd_test(rng.normal(size=(150, 8)), rng.normal(size=(150, 8)), permutations=300)
    shifted = mmd_test(rng.normal(size=(150, 8)), rng.normal(0.5, 1, size=(150, 8)), permutations=300)
    assert same.p_value > 0.05 and shifted.p_value == pytest.approx(1 / 301)
    with pytest.raises(ValueError, match="at least 2 rows"):
        mmd_test(np.zeros((1, 3)), np.zeros((5, 3)))


def test_mmd_false_alarm_rate_stays_near_its_level():
    """Under the null the permutation p-value is uniform: at 0.1, about 10 % of 60 draws."""
    rng = np.random.default_rng(11)
    p = [mmd_test(rng.normal(size=(30, 4)), rng.normal(size=(30, 4)), permutations=99, seed=i).p_value
         for i in range(60)]
    assert 1 <= sum(x < 0.1 for x in p) <= 13


def test_length_and_label_known_answers():
    ks = length_test(np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8]))
    assert ks.statistic == 1.0 and ks.p_value == pytest.approx(2 / 70)   # exact: 2 of C(8,4) orderings
    # 50/50 reference (add-one: 51/51), 80 vs 20 live: chi² = 2 * 30² / 50 = 36.
    labels = label_test(["pos"] * 80 + ["neg"] * 20, ["pos"] * 50 + ["neg"] * 50)
    assert labels.statistic == pytest.approx(36.0) and labels.p_value < 1e-8
    assert label_test(["pos"] * 50 + ["neg"] * 50, ["pos"] * 50 + ["neg"] * 50).p_value == pytest.approx(1.0)
    found = drifted([SampleTest("a", 0, 0.004), SampleTest("b", 0, 0.0020), SampleTest("c", 0, 0.5)], 0.01)
    assert [r.name for r in found] == ["b"]   # Bonferroni: under 0.01 / 3


def hashed(texts: list[str]) -> np.ndarray:
    """A stand-in embedding: word-hash counts (deterministic, no model): enough to tell headlines
    about markets from film reviews."""
    out = np.zeros((len(texts), 64), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().split():
            out[i, sum(map(ord, w)) % 64] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


REVIEWS = [f"a {a} film with a {b} cast" for a in ("fine", "dull", "great", "poor", "moving") for b in
           ("strong", "weak", "tired", "bright", "young", "famous", "new", "small")]


def test_the_window_check_reads_stored_texts_and_records_its_verdict(tmp_path):
    store = OutcomeStore(f"sqlite:///{tmp_path / 'outcomes.db'}")
    rng = np.random.default_rng(0)
    settings = DriftSettings(window_requests=60, min_requests=20, reference_rows=40, alpha=0.01, permutations=300)
    reference = [REVIEWS[i] for i in rng.integers(0, len(REVIEWS), 200)]
    ref_labels = ["pos" if i % 2 else "neg" for i in range(200)]
    assert live_window(store, "m", 10) is None
    store.write([], texts=[RequestText(f"r{i}", float(i), "m", "1", "classification", [REVIEWS[i % len(REVIEWS)]],
                                       ["pos" if i % 2 else "neg"], ["neg", "pos"]) for i in range(60)])
    window = live_window(store, "m", 60)
    assert len(window.texts) == 60 and window.versions == ["1"] and (window.since, window.until) == (0.0, 59.0)
    calm = check("m", window.texts, window.labels, reference, ref_labels, hashed, settings)
    assert not calm.drift and "no drift" in calm.reason and len(calm.tests) == 3
    news = [f"shares in {c} {v} after the {e} report" for c in ("banks", "oil firms", "retailers")
            for v in ("fell", "rose") for e in ("quarterly", "annual", "budget", "trade", "jobs")] * 2
    alarm = check("m", news, ["neg"] * len(news), reference, ref_labels, hashed, settings)
    assert alarm.drift and "embedding_mmd" in alarm.drifted and "drift on m's last 60 live inputs" in alarm.reason
    tiny = DriftSettings(window_requests=60, min_requests=20, reference_rows=40, permutations=300, min_mmd=5.0)
    floored = check("m", news, ["neg"] * len(news), reference, ref_labels, hashed, tiny)
    assert floored.tests[0].p_value < 0.01 / 3 and "embedding_mmd" not in floored.drifted   # an effect under the floor
    assert floored.drifted == ["length_ks", "label_chi2"]
    few = check("m", news[:5], [], reference, ref_labels, hashed, settings)
    assert not few.drift and "no verdict" in few.reason
    record(store, alarm, "1")
    event = store.events("m", 0, kind="drift")[0]
    assert json.loads(event.detail)["drift"] is True and event.replica == "drift-check"


def test_the_label_test_compares_the_version_with_itself(tmp_path, tiny_bert, monkeypatch):
    """A version that leans to one label, on in-domain traffic: against the validation split's true
    labels the label test calls that drift; against the labels the same version gives the
    validation texts (`labels_given`, what the drift check uses), it does not."""
    import mlflow
    from test_serving import register_version

    from tasks.models.base import load_base
    from tasks.release.drift import labels_given

    empty_mlflow_store(tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment("drift-labels")
    version = register_version(tmp_path, load_base(str(tiny_bert)), "leaning", "lora", 1, experiment,
                               labels=[0] * 16, epochs=5, learning_rate=1e-2)   # trained on "negative" only
    order = np.random.default_rng(1).permutation(len(REVIEWS))
    reference, live = [REVIEWS[i] for i in order[:20]], [REVIEWS[i] for i in order[20:]]   # one distribution
    shown = labels_given("leaning", version, live)
    assert shown.count("negative") >= 18, shown
    truth = ["positive" if i % 2 else "negative" for i in range(len(reference))]
    settings = DriftSettings(window_requests=60, min_requests=20, reference_rows=40, alpha=0.01, permutations=300)
    against_truth = check("leaning", live, shown, reference, truth, hashed, settings)
    against_itself = check("leaning", live, shown, reference, labels_given("leaning", version, reference), hashed,
                           settings)
    assert "label_chi2" in against_truth.drifted, against_truth.reason
    assert "label_chi2" not in against_itself.drifted, against_itself.reason


def test_the_drift_check_flow_takes_the_label_reference_from_the_answering_version(tmp_path, tiny_bert, harness,
                                                                                  monkeypatch):
    """The drift-check flow on stored texts of a registered version that leans to one label: its
    label test compares what the version showed live with what it gives the validation texts."""
    import mlflow
    import pandas as pd
    import yaml
    from test_serving import register_version

    from flows.drift import drift_check
    from flows.inputs import DriftCheckInput
    from tasks.models.base import load_base

    empty_mlflow_store(tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    version = register_version(tmp_path, load_base(str(tiny_bert)), "leaning", "lora", 1,
                               mlflow.create_experiment("drift-flow"), labels=[0] * 16, epochs=5, learning_rate=1e-2)
    root = tmp_path / "proj"
    (root / "data" / "processed").mkdir(parents=True)
    order = np.random.default_rng(1).permutation(len(REVIEWS))
    reference, live = [REVIEWS[i] for i in order[:20]], [REVIEWS[i] for i in order[20:]]
    pd.DataFrame({"text": reference, "label": ["positive" if i % 2 else "negative" for i in range(20)]}).to_parquet(
        root / "data" / "processed" / "validation.parquet")
    params = yaml.safe_load(open("params.yaml"))
    params["project"]["registered_model"] = "leaning"
    params["drift"].update(window_requests=60, min_requests=20, reference_rows=40, permutations=300)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    store = OutcomeStore(f"sqlite:///{root / 'outcomes.db'}")
    store.write([], texts=[RequestText(f"r{i}", float(i), "leaning", version, "classification", [text], ["negative"],
                                       ["negative", "positive"]) for i, text in enumerate(live)])
    store.dispose()
    params["outcomes"]["store"] = f"sqlite:///{root / 'outcomes.db'}"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    [line] = drift_check(DriftCheckInput(params_file=str(root / "params.yaml")))
    import re

    p_label = float(re.search(r"label_chi2 p=([0-9.e+-]+)", line).group(1))
    assert p_label > 0.5, line   # all "negative" live and on validation: no label drift (true labels: p < 0.001)
