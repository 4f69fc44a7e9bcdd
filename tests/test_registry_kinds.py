"""A registered model name shared by two projects (issue 32): the second project's run registers
its version but neither re-scores the first project's @challenger nor replaces it."""
from __future__ import annotations

import os

import numpy as np
from mlflow.tracking import MlflowClient

from conftest import fresh_store

import mlflow
from tasks.artifacts.pyfunc import PYFUNC_ENTRY, signature
from tasks.evaluation.record import StrategyResult
from tasks.models.base import ResolvedBase
from tasks.registry import versions as model_registry

MODEL = "shared-name"


def scoring(md5: str) -> model_registry.ScoringSet:
    return model_registry.ScoringSet(split_md5=md5, texts=["q"], labels=np.zeros(0, dtype=np.int64), label_names=[],
                                     references=["a"], task="generation")


def candidate(tmp_path, experiment: str, score: float) -> StrategyResult:
    """A logged folder standing in for a version's weights: it is never loaded (nothing is
    re-scored across kinds; a re-score of it would fail)."""
    folder = tmp_path / f"weights-{score}"
    folder.mkdir()
    (folder / "note.txt").write_text("not a model")
    with mlflow.start_run(experiment_id=experiment) as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_ENTRY), artifacts={"strategy": str(folder)},
                                       signature=signature("generation"), pip_requirements=["adaptflow"])
    base = ResolvedBase("tiny", tmp_path, "0" * 64)
    return StrategyResult(strategy="lora", run_id=run.info.run_id, model_uri=info.model_uri,
                          saves="adapter", metrics={"val_rougeL": score}, base=base, params={})


def test_another_projects_challenger_is_neither_rescored_nor_replaced(tmp_path):
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        fresh_store(tmp_path)
        experiment = mlflow.create_experiment("kinds", artifact_location=(tmp_path / "artifacts").as_uri())
        qa = model_registry.register_best(MODEL, "val_rougeL", 0.0, {}, [candidate(tmp_path, experiment, 0.15)],
                                          {"data.source": "/home/u/qa.jsonl", "task": "generation"}, scoring("qa"))
        assert qa.decision.set_challenger
        second = model_registry.register_best(MODEL, "val_rougeL", 0.0, {},
                                              [candidate(tmp_path, experiment, 0.17)],
                                              {"data.source": "/home/u/abstracts.jsonl", "task": "generation"},
                                              scoring("abstracts"))
        client = MlflowClient()
        assert not second.decision.set_challenger
        assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == qa.version
        assert any("is a generation model of /home/u/qa.jsonl" in r for r in second.decision.reasons)
        tags = client.get_model_version(MODEL, second.version).tags
        assert (tags["task"], tags["data.source"]) == ("generation", "/home/u/abstracts.jsonl")
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
