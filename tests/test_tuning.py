"""Tuning and selection: Optuna studies per trained strategy on train + validation only, each
trial an MLflow run nested under its strategy's run; one rule (selection.choose, on validation)
for the report's recommendation and the registered version."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, fresh_store
from mlflow.tracking import MlflowClient

import mlflow
from flows.specialize import DataInput, SpecializeInput, specialize
from tasks.config import SettingsError, load_settings
from tasks.strategies import registry
from tasks.strategies.search import Choice, Range, parse_space, space_of
from tasks.tracking import use_store

EXPERIMENT = "adaptflow-rotten-tomatoes"
MODEL = "rotten-tomatoes-sentiment"
DATA_EXPERIMENT = "adaptflow-reviews"   # a run with --data .../reviews.csv
GOOD, BAD = ["moving", "funny", "sharp", "warm", "clever"], ["dull", "slow", "flat", "noisy", "stale"]


def reviews(n: int = 240) -> pd.DataFrame:
    """Synthetic reviews, half good half bad, with a split column: 160 train, 40 validation, 40 test."""
    rows = []
    for i in range(n):
        good = i % 2 == 0
        word = (GOOD if good else BAD)[(i // 2) % 5]
        rows.append({"review": f"review {i}: a {word} film, {word} from start to finish (take {i * 7})",
                     "sentiment": "positive" if good else "negative"})   # zero_shot's described labels
    return pd.DataFrame(rows).assign(part=["train"] * 160 + ["validation"] * 40 + ["test"] * 40)


# ---- search spaces and settings -------------------------------------------------------
def test_every_trained_strategy_searches_its_learning_rate_and_overrides_are_checked(tmp_path):
    for task in ("classification", "generation"):
        for name in registry.names(task):
            strategy = registry.get(name, task)
            if strategy.trains:
                space = space_of(strategy.parse_params({}))
                assert isinstance(space["learning_rate"], Range) and space["learning_rate"].log, name
    lora = registry.get("lora").parse_params({})
    assert space_of(lora, {"r": [2, 4]})["r"] == Choice((2, 4))
    assert parse_space("lr", {"low": 1e-4, "high": 1e-2, "log": True}) == Range(1e-4, 1e-2, True)
    with pytest.raises(ValueError, match="a range needs low < high"):
        parse_space("lr", {"low": 1e-2, "high": 1e-4})
    with pytest.raises(ValueError, match="rank is not a setting of this strategy"):
        space_of(lora, {"rank": [2, 4]})

    def settings_with(tune: dict, **other) -> None:
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["tune"] = {**params["tune"], **tune}
        params.update(other)
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(params))
        load_settings(path)

    settings_with({"enabled": True, "spaces": {"lora": {"r": [4, 8]}}})
    with pytest.raises(SettingsError, match=r"tune.spaces.lora.rank is not a setting"):
        settings_with({"spaces": {"lora": {"rank": [4, 8]}}})
    with pytest.raises(SettingsError, match=r"tune.spaces.zero_shot: zero_shot does not train"):
        settings_with({"spaces": {"zero_shot": {"k": [1]}}})
    with pytest.raises(SettingsError, match="section 'tune': trials must be >= 1"):
        settings_with({"trials": 0})
    with pytest.raises(SettingsError, match="unknown budget"):   # was never checked before (dead code)
        settings_with({}, project={**yaml.safe_load((ROOT / "params.yaml").read_text())["project"],
                                   "budgets": {"max_cost": 1}})


# ---- a study on its own (SQLite, as by default) ----------------------------------------
def test_a_study_starts_from_the_configured_params_prunes_on_validation_loss_and_resumes(
        tmp_path, tiny_bert, monkeypatch):
    """lora on a tiny BERT, learning rate 1e-3 (configured) or 1e-9 (cannot learn): trial 0 is the
    configured params, a 1e-9 trial is pruned once its validation loss trails the median, every
    trial is an MLflow run nested under the strategy's, and a second call resumes the study."""
    from conftest import make_project
    from tune_worker import frames

    from tasks.models.base import load_base
    from tasks.training.run import prepare_inputs
    from tasks.training.tuning import tune_strategy

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = make_project(tmp_path, {"model": {"base": str(tiny_bert)}})
    tune = {"enabled": True, "trials": 5, "startup_trials": 1, "warmup_checks": 0,
            "spaces": {"lora": {"learning_rate": [1e-3, 1e-9], "r": [8]}}}
    settings = load_settings(project / "params.yaml", "smoke", ["lora"],
                             {"tune": tune, "train": {"max_train_examples": 160, "eval_every": 2, "epochs": 1}})
    inputs = prepare_inputs(settings, load_base(settings.model.base, settings.root), frames(), "lora")
    use_store(project)
    experiment = mlflow.create_experiment("tuning")
    with mlflow.start_run(experiment_id=experiment) as run:
        tuned = tune_strategy(inputs, settings, "data-key", experiment)
    assert tuned.default_trial == 0 and tuned.trials[0].params == {"learning_rate": 1e-3, "r": 8}
    assert len(tuned.trials) == 5 and tuned.chosen == {"learning_rate": 1e-3, "r": 8}
    assert tuned.params.learning_rate == 1e-3 and tuned.trained is not None   # the best trial's model, kept
    states = {t.number: (t.params["learning_rate"], t.state) for t in tuned.trials}
    assert all(state == "PRUNED" for lr, state in states.values() if lr == 1e-9), states
    assert any(state == "PRUNED" for _, state in states.values()), states
    pruned = [t for t in tuned.trials if t.state == "PRUNED"]
    assert all(t.last_step < 10 for t in pruned)   # stopped before the last of 10 steps
    client = MlflowClient()
    nested = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert sorted(int(r.data.tags["tune.trial"]) for r in nested) == list(range(5))
    assert {r.data.tags["tune.state"] for r in nested if r.data.params["trial.learning_rate"] == "1e-09"} == {"pruned"}

    with mlflow.start_run(experiment_id=experiment):
        again = tune_strategy(inputs, settings, "data-key", experiment)
    assert again.study == tuned.study and len(again.trials) == 5 and again.chosen == tuned.chosen
    assert again.trained is None   # resumed with its budget spent: the final training retrains the best recipe


# ---- one rule for the report and the registry ----------------------------------------
def test_the_registry_registers_what_the_report_recommends_when_the_top_scorer_is_over_budget(
        tmp_path, tiny_bert, monkeypatch):
    """Real MLflow registry, two really logged tiny versions. full_finetune is best on validation
    but over the artifact budget: the runner-up inside it (lora) is registered and recommended.
    Test scores that point the other way change nothing: selection reads validation only."""
    from tasks.evaluation.report import recommendation
    from tasks.evaluation.report_data import StrategyRow
    from tasks.registry import versions

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    fresh_store(tmp_path)
    experiment = mlflow.create_experiment("one-rule", artifact_location=(tmp_path / "artifacts").as_uri())
    budgets = {"max_artifact_bytes": 5e7}
    metrics = {"full_finetune": {"val_macro_f1": 0.90, "test_macro_f1": 0.70, "artifact_bytes": 9e7},
               "lora": {"val_macro_f1": 0.80, "test_macro_f1": 0.60, "artifact_bytes": 1e6},
               "prompt_tuning": {"val_macro_f1": 0.60, "test_macro_f1": 0.95, "artifact_bytes": 2e4}}
    results = [logged_result(tmp_path, tiny_bert, name, m | {"val_examples": 2.0}, experiment)
               for name, m in metrics.items()]
    scoring = versions.ScoringSet("val-md5", ["good", "bad"], np.array([1, 0]), ["negative", "positive"])
    reg = versions.register_best("one-rule-model", "val_macro_f1", 0.0, budgets, results, {}, scoring, 1.0)
    rows = [StrategyRow(r.strategy, r.run_id, "FINISHED", r.metrics) for r in results]
    assert reg.strategy == recommendation(rows, 1.0, budgets, ("val_macro_f1", "macro-F1")).choice == "lora"
    assert reg.decision.set_challenger
    tags = MlflowClient().get_model_version("one-rule-model", reg.version).tags
    assert tags["eval.selection_split"] == "validation" and tags["eval.selection_metric"] == "val_macro_f1"
    assert "artifact_bytes 9e+07 bytes is over max_artifact_bytes" in " ".join(
        recommendation(rows, 1.0, budgets, ("val_macro_f1", "macro-F1")).reasons)


def test_choose_reads_validation_only_and_leaves_out_a_smaller_validation_subset():
    from tasks.evaluation.selection import choose

    named = [("full_finetune", {"val_macro_f1": 0.82, "test_macro_f1": 0.10, "artifact_bytes": 9e7, "val_examples": 800}),
             ("lora", {"val_macro_f1": 0.815, "test_macro_f1": 0.99, "artifact_bytes": 3e5, "val_examples": 800}),
             ("few_shot", {"val_macro_f1": 0.95, "test_macro_f1": 0.99, "artifact_bytes": 1e3, "val_examples": 300})]
    rec = choose(named, "val_macro_f1", 1.0)
    assert rec.choice == "lora" and rec.reasons[0].startswith("few_shot: scored on 300 validation examples, not 800")
    flipped = [(n, m | {"test_macro_f1": 1 - m["test_macro_f1"]}) for n, m in named]
    assert choose(flipped, "val_macro_f1", 1.0) == rec
    assert choose(named, "val_macro_f1", 0.1).choice == "full_finetune"


def logged_result(tmp, base_dir, name: str, metrics: dict, experiment: str):
    """A strategy built on the tiny base, saved and logged as `adaptflow run` logs it (untrained:
    the registry does not look at the weights), as the StrategyResult the flow hands on."""
    from tasks.evaluation.record import StrategyResult
    from tasks.models.base import ResolvedBase
    from tasks.models.heads import Head
    from tasks.artifacts.manifest import Manifest, params_dict
    from tasks.artifacts.pyfunc import PYFUNC_ENTRY, signature

    strategy = registry.get(name)
    params = strategy.parse_params({})
    labels = ["negative", "positive"]
    folder = tmp / name
    folder.mkdir()
    strategy.save(strategy.build(base_dir, Head.for_task("classification", labels), params), folder)
    base = ResolvedBase("tiny-bert", base_dir, "f" * 64)
    Manifest(strategy=name, params=params_dict(params), labels=labels, max_length=32, base_name=base.name,
             base_fingerprint=base.fingerprint, saves=strategy.saves).write(folder)
    with mlflow.start_run(experiment_id=experiment, run_name=name) as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_ENTRY), artifacts={"strategy": str(folder)},
                                       signature=signature(), pip_requirements=["adaptflow"])
    return StrategyResult(name, run.info.run_id, info.model_uri, strategy.saves, metrics, base, params_dict(params))


# ---- the flow, tuned, twice: the second time with every test label flipped -----------------
def tuned_run(project, path, storage: str):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["tune"].update({"trials": 3, "startup_trials": 1, "storage": storage})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke", tune=True,
                                      data=DataInput(path=str(path), text_col="review", label_col="sentiment",
                                                     split_col="part")))


def test_tuning_runs_nested_trials_and_no_choice_reads_the_test_split(harness, project_factory, tiny_bert, tmp_path):
    project = project_factory({"model": {"base": str(tiny_bert)},
                               "strategies": {"run": ["lora", "prompt_tuning", "zero_shot"]}})
    clean, flipped = reviews(), reviews()
    test = flipped["part"] == "test"
    flipped.loc[test, "sentiment"] = flipped.loc[test, "sentiment"].map({"positive": "negative", "negative": "positive"})
    # One file name in two folders: a --data run names its experiment after the file (adaptflow-reviews).
    for folder, frame in (("clean", clean), ("flipped", flipped)):
        (tmp_path / folder).mkdir()
        frame.to_csv(tmp_path / folder / "reviews.csv", index=False)

    first = tuned_run(project, tmp_path / "clean" / "reviews.csv", "mlflow/optuna-first.db")
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name(DATA_EXPERIMENT).experiment_id])
    strategy_runs = {r.data.tags["strategy"]: r for r in runs
                     if r.data.tags.get("mlflow.parentRunId") == first.parent_run_id}
    for name in ("lora", "prompt_tuning"):
        run = strategy_runs[name]
        trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == run.info.run_id]
        assert len(trials) == 3 and {r.data.tags["tune.state"] for r in trials} <= {"complete", "pruned"}
        assert all(r.data.params.get("trial.learning_rate") for r in trials)
        record = yaml.safe_load(open(client.download_artifacts(run.info.run_id, "tuning.json")))
        assert record["default_trial"] == 0 and len(record["trials"]) == 3
        chosen = {k: v for k, v in record["chosen"].items()}
        config = yaml.safe_load(client.get_run(run.info.run_id).data.params.get("tune.chosen.learning_rate", "null"))
        assert config == pytest.approx(chosen["learning_rate"])
        assert run.data.metrics["tune_trials"] == 3 and "tune_default_val_loss" in run.data.metrics
    assert "tune_trials" not in strategy_runs["zero_shot"].data.metrics   # prompting: variants, not trials
    report = open(first.report).read()
    assert 'id="tuning"' in report
    recommended = re.search(r'id="recommendation"><strong>Recommendation.</strong> (\w+):', report).group(1)
    assert recommended == first.candidate   # the report and the registry: one rule

    second = tuned_run(project, tmp_path / "flipped" / "reviews.csv", "mlflow/optuna-second.db")   # a fresh study
    assert second.data_version != first.data_version
    runs = client.search_runs([client.get_experiment_by_name(DATA_EXPERIMENT).experiment_id])
    again = {r.data.tags["strategy"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == second.parent_run_id}
    for name in ("lora", "prompt_tuning"):
        before, after = (yaml.safe_load(open(client.download_artifacts(r.info.run_id, "tuning.json")))
                         for r in (strategy_runs[name], again[name]))
        assert after["chosen"] == before["chosen"], name
        assert after["trials"][0]["value"] == pytest.approx(before["trials"][0]["value"])
    for name in strategy_runs:
        assert again[name].data.metrics["val_macro_f1"] == pytest.approx(strategy_runs[name].data.metrics["val_macro_f1"])
    flipped_accuracy = {n: (strategy_runs[n].data.metrics["test_accuracy"], again[n].data.metrics["test_accuracy"])
                        for n in strategy_runs}
    assert all(b == pytest.approx(1 - a) for a, b in flipped_accuracy.values()), flipped_accuracy
    assert second.candidate == first.candidate
    report = open(second.report).read()
    assert re.search(r'id="recommendation"><strong>Recommendation.</strong> (\w+):', report).group(1) == second.candidate


def test_seed_spread_trains_the_same_recipe_once_more_per_seed(tmp_path, tiny_bert):
    from conftest import make_project
    from tune_worker import frames

    from tasks.models.base import load_base
    from tasks.training.run import fit, prepare_inputs, seed_spread

    project = make_project(tmp_path, {"model": {"base": str(tiny_bert)}})
    settings = load_settings(project / "params.yaml", "smoke", ["lora"], {"evaluation": {"seeds": [13, 14, 15]}})
    inputs = prepare_inputs(settings, load_base(settings.model.base, settings.root), frames(), "lora")
    first = fit(inputs, settings.train, "lora").metrics
    spread = seed_spread(inputs, settings, first)
    assert spread["seeds_run"] == 3
    for key in ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1"):
        assert 0 <= spread[f"{key}_seed_mean"] <= 1 and spread[f"{key}_seed_std"] >= 0
    # The same three trainings by hand: the spread is over exactly these.
    from dataclasses import replace

    from tasks.training.loop import seed_everything

    accuracies = [first["val_accuracy"]]
    for seed in (14, 15):
        seed_everything(seed)
        accuracies.append(fit(inputs, replace(settings.train, seed=seed), "lora").metrics["val_accuracy"])
    assert spread["val_accuracy_seed_mean"] == pytest.approx(np.mean(accuracies))
    assert spread["val_accuracy_seed_std"] == pytest.approx(np.std(accuracies, ddof=1))
