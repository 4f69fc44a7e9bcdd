"""Registered versions never run stored code: adaptflow loads a version only
through its own loader, and refuses one whose artifact is not adaptflow's before loading any of
it. The planted payloads below would create a marker file if anything executed them."""
from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import LABELS, ROOT, fresh_store

import mlflow
from tasks.artifacts.fetch import fetch_version
from tasks.artifacts.manifest import Manifest
from tasks.artifacts.predictor import load_predictor
from tasks.artifacts.provenance import ForeignArtifact, artifact_problems
from tasks.artifacts.pyfunc import PYFUNC_ENTRY
from tasks.models.base import load_base
from tasks.models.heads import Head
from tasks.registry import versions
from tasks.strategies import registry

MODEL = "provenance-model"


class Payload:
    """Unpickling this touches `marker`: stands for any code an attacker would plant."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (Path(self.marker),)


class Planted(mlflow.pyfunc.PythonModel):
    def __init__(self, marker: str):
        self.payload = Payload(marker)

    def predict(self, context, model_input, params=None):
        return model_input


def zero_shot_folder(where: Path, base_dir: Path) -> Path:
    """A genuine adaptflow strategy folder (zero_shot on the tiny BERT: nothing to train)."""
    strategy = registry.get("zero_shot")
    params = strategy.parse_params({})
    folder = where / "strategy"
    strategy.save(strategy.build(base_dir, Head.for_task('classification', LABELS), params), folder)
    Manifest(strategy="zero_shot", params=dataclasses.asdict(params), labels=LABELS, max_length=32,
             base_name=str(base_dir), base_fingerprint=load_base(str(base_dir)).fingerprint,
             saves=strategy.saves).write(folder)
    return folder


@pytest.fixture
def store(tmp_path, monkeypatch, tiny_bert):
    """v1: adaptflow's own; v2: a cloudpickled python_model (with an adaptflow strategy folder
    beside it, so only the pickle gives it away); v3: adaptflow's pyfunc, but a pickled `.bin`
    in its strategy folder."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "params.yaml").write_text("{}\n")
    fresh_store(tmp_path)
    marker = tmp_path / "planted-code-ran"
    genuine = zero_shot_folder(tmp_path, tiny_bert)
    poisoned = tmp_path / "poisoned"
    poisoned.mkdir()
    for f in genuine.iterdir():
        (poisoned / f.name).write_bytes(f.read_bytes())
    (poisoned / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(str(marker))))
    exp = mlflow.create_experiment("prov", artifact_location=(tmp_path / "art").as_uri())
    for python_model, folder in ((str(PYFUNC_ENTRY), genuine), (Planted(str(marker)), genuine),
                                 (str(PYFUNC_ENTRY), poisoned)):
        with mlflow.start_run(experiment_id=exp):
            info = mlflow.pyfunc.log_model(name="m", python_model=python_model, artifacts={"strategy": str(folder)},
                                           pip_requirements=["adaptflow"])
        mlflow.register_model(info.model_uri, MODEL)
    return tmp_path, marker


def test_a_version_that_is_not_adaptflows_is_refused_and_its_code_never_runs(store):
    tmp, marker = store
    folder = fetch_version(MODEL, "1", tmp / "dl1")                 # adaptflow's own loads
    assert load_predictor(folder).manifest.strategy == "zero_shot"
    with pytest.raises(ForeignArtifact, match=re.escape("pickled python_model")):
        fetch_version(MODEL, "2", tmp / "dl2")
    with pytest.raises(ForeignArtifact, match=re.escape("pytorch_model.bin")):
        fetch_version(MODEL, "3", tmp / "dl3")
    test = versions.ScoringSet("x", ["good", "bad"], np.array([1, 0]), LABELS)  # the registry's re-scoring path
    with pytest.raises(ForeignArtifact, match="not an adaptflow artifact"):
        versions.rescore(MODEL, "2", test, "test_accuracy")
    assert not marker.exists(), "code stored with a version ran"
    # The plant is real: MLflow's own loader runs it.
    mlflow.pyfunc.load_model(f"models:/{MODEL}/2").predict(pd.DataFrame({"text": ["x"]}))
    assert marker.exists()


def test_the_provenance_rules():
    ours = {"flavors": {"python_function": {"loader_module": "mlflow.pyfunc.loaders.code_model",
                                            "artifacts": {"strategy": {"path": "artifacts/s"}}}}}
    assert artifact_problems(ours, ["MLmodel", "artifacts"], ["adaptflow.json", "adapter_model.safetensors"],
                             "adaptflow.json") == []
    escape = {"flavors": {"python_function": {**ours["flavors"]["python_function"],
                                              "artifacts": {"strategy": {"path": "../../etc"}}}}}
    assert "strategy artifact path" in artifact_problems(escape, [], ["adaptflow.json"], "adaptflow.json")[0]
    assert "no adaptflow.json" in artifact_problems(ours, [], ["model.safetensors"], "adaptflow.json")[0]
    assert "flavors" in artifact_problems({"flavors": {"python_function": {}, "sklearn": {}}}, [], [], "a")[0]


def test_no_adaptflow_code_loads_a_version_through_mlflow_pyfunc():
    """The only way adaptflow reads a version is fetch_version + load_predictor."""
    offenders = [str(p.relative_to(ROOT)) for folder in ("tasks", "flows") for p in (ROOT / folder).rglob("*.py")
                 if re.search(r"load_model\(", p.read_text())]
    assert offenders == []
