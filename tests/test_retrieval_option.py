"""Retrieval as an option on a trained strategy (`lora+retrieval`, tasks/strategies/with_retrieval.py):
configured under the strategy, trained with its neighbours exactly as it is evaluated and served,
a training example never seeing its own row, and the saved version bound to its index."""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT

from tasks.config import SettingsError, load_settings
from tasks.models.base import load_base
from tasks.models.retrieval import RetrievalError
from tasks.strategies.with_retrieval import RetrievalFields

REVIEWS = [("a gripping thriller with a clever twist", "positive"), ("a tense, twisty thriller", "positive"),
           ("dull and far too long", "negative"), ("boring, overlong and flat", "negative"),
           ("a warm family comedy", "positive"), ("the jokes fall flat", "negative"),
           ("stunning animation for all ages", "positive"), ("a lifeless sequel", "negative"),
           ("moving and beautifully acted", "positive"), ("a mess from start to finish", "negative")]


def frames() -> dict[str, pd.DataFrame]:
    frame = lambda rows: pd.DataFrame({"text": [t for t, _ in rows], "label": [y for _, y in rows]})
    return {"train": frame(REVIEWS), "validation": frame([("a clever thriller", "positive"), ("flat and dull", "negative")]),
            "test": frame([("a warm, moving comedy", "positive"), ("far too long and lifeless", "negative"),
                           ("twisty and tense", "positive")])}


def params_file(tmp_path: Path, lora: dict) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["strategies"]["lora"] = {**(raw["strategies"].get("lora") or {}), **lora}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_option_lives_under_its_strategy_and_runs_beside_it(tmp_path):
    s = load_settings(params_file(tmp_path, {"retrieval": {"k": 3}}), strategies=["lora", "lora+retrieval"])
    assert not isinstance(s.strategy_params["lora"], RetrievalFields)   # plain lora runs without it
    assert s.strategy_params["lora+retrieval"].k == 3
    assert s.strategy_params["lora+retrieval"].r == s.strategy_params["lora"].r
    with pytest.raises(SettingsError, match="does not train: retrieval is an option of trained strategies"):
        load_settings(ROOT / "params.yaml", strategies=["few_shot+retrieval"])
    with pytest.raises(ValueError, match=r"strategies.lora\+retrieval: retrieval.k must be in 1..16, got 40"):
        load_settings(params_file(tmp_path, {"retrieval": {"k": 40}}), strategies=["lora+retrieval"])
    with pytest.raises(ValueError, match=r"strategies.lora\+retrieval: unknown setting\(s\) neighbours"):
        load_settings(params_file(tmp_path, {"retrieval": {"neighbours": 3}}), strategies=["lora+retrieval"])


def test_parsed_params_travel_to_a_strategy_process_as_they_are(tmp_path):
    """ops.isolation: process hands the settings to the strategy's process as a pickle: each chosen
    strategy's parsed params arrive equal, `lora+retrieval`'s too (its class is made at run time,
    and in a new process it does not exist yet)."""
    import pickle
    import subprocess
    import sys

    s = load_settings(params_file(tmp_path, {"retrieval": {"k": 3}}), strategies=["lora", "lora+retrieval", "zero_shot"])
    (tmp_path / "settings.pkl").write_bytes(pickle.dumps(s))
    code = ("import dataclasses, json, pickle, sys; s = pickle.load(open(sys.argv[1], 'rb')); "
            "print(json.dumps({n: [type(p).__name__, dataclasses.asdict(p)] for n, p in s.strategy_params.items()}))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "settings.pkl")], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert json.loads(out) == {n: [type(p).__name__, asdict(p)] for n, p in s.strategy_params.items()}
    assert json.loads(out)["lora+retrieval"][0] == "LoraParamsWithRetrieval"
    assert pickle.loads(pickle.dumps(s)).strategy_params == s.strategy_params


def test_a_training_example_never_sees_its_own_row(tmp_path, monkeypatch):
    from tasks.models.packaged import MINILM
    from tasks.strategies.with_retrieval import RetrievalFields, attach_index, split_neighbours

    monkeypatch.setenv("ADAPTFLOW_CACHE", str(tmp_path / "cache"))
    f = frames()
    params = attach_index(RetrievalFields(k=3, embedder=MINILM), f["train"], "label")
    found = split_neighbours(params, f)
    for (text, label), row in zip(REVIEWS, found["train"]):
        assert (text, label) not in row and len(row) == 3
    for split in ("validation", "test"):
        held_out = set(f[split]["text"])
        assert all(t not in held_out and (t, y) in REVIEWS for row in found[split] for t, y in row)
    # A subset of train rows keeps each row's own id (its position in the whole split).
    picked = {"train": f["train"].iloc[[2, 5, 7]]}
    rows = split_neighbours(params, picked, [2, 5, 7])["train"]
    assert all(REVIEWS[i] not in row for i, row in zip([2, 5, 7], rows))


def test_lora_with_retrieval_trains_on_what_it_is_served_with_and_keeps_its_index(tiny_bert, tmp_path, monkeypatch):
    """Through prepare_inputs / compute / save_outcome (the flow's own calls), then the
    registry's loader: the reloaded version augments a request exactly as training did (same
    probabilities), and pointing it at another data version is refused."""
    from tasks.artifacts.manifest import MANIFEST
    from tasks.artifacts.predictor import load_predictor, predict
    from tasks.training.run import compute, prepare_inputs, save_outcome

    monkeypatch.setenv("ADAPTFLOW_CACHE", str(tmp_path / "cache"))
    s = load_settings(params_file(tmp_path, {"retrieval": {"k": 2, "context_tokens": 48}}),
                      strategies=["lora", "lora+retrieval"])
    s = replace(s, model=replace(s.model, base=str(tiny_bert), max_length=32),
                train=replace(s.train, batch_size=4, epochs=1, max_train_examples=0, max_eval_examples=0),
                evaluation=replace(s.evaluation, forgetting_train_examples=0, learning_curve_strategies=[]),
                root=tmp_path)
    base = load_base(str(tiny_bert))
    plain = prepare_inputs(s, base, frames(), "lora")
    inputs = prepare_inputs(s, base, frames(), "lora+retrieval")
    assert inputs.params.data_version and Path(inputs.params.index).is_dir()
    for a, b in zip(plain.splits["train"].input_ids, inputs.splits["train"].input_ids):
        assert len(b) > len(a) and len(b) <= 32 + 48 and b[: len(a) - 1] == a[:-1]   # the example, then its neighbours
    outcome = compute(inputs, s)
    m = outcome.metrics
    assert m["index_rows"] == len(REVIEWS) and m["retrieval_ms_p50"] > 0 and 0 < m["retrieval_extra_prompt_tokens"] <= 48
    assert 0 <= m["test_accuracy"] <= 1 and outcome.training.steps >= 1

    folder = tmp_path / "artifact"
    save_outcome(inputs, outcome, s, folder)
    predictor = load_predictor(folder)
    assert predictor.manifest.strategy == "lora+retrieval" and (folder / "retrieval_index" / "index.faiss").is_file()
    texts = list(frames()["test"]["text"])
    served = predict(predictor, texts)
    from tasks.evaluation.predict import predict_proba

    probs = predict_proba(outcome.model, inputs.splits["test"], predictor.tokenizer.pad_token_id)
    assert np.allclose(served.probs, probs, atol=1e-5)

    raw = json.loads((folder / MANIFEST).read_text())
    raw["params"]["data_version"] = "0" * 64
    (folder / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(RetrievalError, match="indexes data version .* not 000000000000"):
        load_predictor(folder)


def test_a_retrieving_version_is_served_as_its_own_module():
    from tasks.serving.pool import serving_mode
    from tasks.strategies import registry

    assert serving_mode(registry.get("lora+retrieval"), model="m", merged=[]) == ("own", "")
    assert serving_mode(registry.get("lora+retrieval"), model="m", merged=["m"])[0] == "merged"
    assert serving_mode(registry.get("lora"), model="m", merged=[])[0] == "shared_peft"


def test_the_report_pairs_each_strategy_with_its_retrieval_variant_on_the_same_examples():
    from tasks.evaluation.report_data import StrategyRow
    from tasks.evaluation.retrieval_ablation import retrieval_pairs, retrieval_section

    def row(name, acc, correct):
        return StrategyRow(name, "r", "FINISHED", {"test_accuracy": acc, "test_accuracy_ci_low": acc - 0.05,
                                                   "test_accuracy_ci_high": acc + 0.05, "retrieval_ms_p50": 7.5},
                           correct=correct)
    wrong_then_right = [False] * 12 + [True] * 28
    rows = [row("lora", 0.70, [True] * 28 + [False] * 12), row("lora+retrieval", 0.70, wrong_then_right),
            row("few_shot", 0.6, [True] * 30), row("retrieval_few_shot", 0.7, [True] * 40), row("ia3", 0.8, None)]
    pairs = retrieval_pairs(rows, task="classification")
    assert [(p.without.strategy, p.with_retrieval.strategy) for p in pairs] == [
        ("few_shot", "retrieval_few_shot"), ("lora", "lora+retrieval")]
    assert pairs[0].p_value is None and "not paired: 30 and 40" in pairs[0].test
    assert pairs[1].gain_points == pytest.approx(0) and pairs[1].p_value == pytest.approx(1.0)   # 12 vs 12 discordant
    html = retrieval_section(rows, task="classification")
    assert "lora → lora+retrieval" in html and "0.7000 [0." in html and "7.5" in html
    assert "1.0000 [1.000, 1.000]" in html   # retrieval_few_shot's 40 of 40, from its per-example results
    assert retrieval_section(rows[:1], task="classification") == ""
