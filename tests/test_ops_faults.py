"""Fault isolation: a failing strategy is retried, then recorded as a FAILED child run
with its error while the others finish and the best of them is registered; an unreachable
MLflow at start stops the run in seconds, before any data is read; only runs whose model
artifacts are all in the store can become versions. Real Prefect, MLflow, DVC; no mocks."""
from __future__ import annotations

import socket
import time

from mlflow.tracking import MlflowClient

import mlflow
from flows.specialize import SpecializeInput, specialize
from tasks.tracking import use_store

EXPERIMENT = "adaptflow-rotten-tomatoes"
MODEL = "rotten-tomatoes-sentiment"



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failing_strategy_is_recorded_and_the_others_are_registered(harness, project_factory, tiny_bert):
    project = project_factory({"model": {"base": str(tiny_bert)},
                               "strategies": {"run": ["lora", "zero_shot"],
                                              "lora": {"target_modules": ["no_such_layer"]}},
                               "ops": {"retries": 1, "retry_delay_seconds": 0}})
    out = specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke"))
    assert set(out.failed) == {"lora"} and out.failed["lora"].startswith("NoMatchingPeftModuleError: No modules")
    assert out.candidate == "zero_shot" and set(out.models) == {"zero_shot"}

    use_store(project)
    client = MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT)
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{out.parent_run_id}'")
    lora = sorted((r for r in children if r.data.tags["strategy"] == "lora"), key=lambda r: r.data.tags["attempt"])
    assert [r.info.status for r in lora] == ["FAILED", "FAILED"], "one run per attempt (ops.retries: 1)"
    assert [r.data.tags["retried"] for r in lora] == ["true", "false"]
    assert all(r.data.tags["error.type"] == "NoMatchingPeftModuleError" for r in lora)
    assert all("No modules were targeted" in r.data.tags["error"] for r in lora)
    [zero] = [r for r in children if r.data.tags["strategy"] == "zero_shot"]
    assert zero.info.status == "FINISHED"
    assert client.get_run(out.parent_run_id).info.status == "FINISHED"
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == out.registered_version
    page = open(out.report).read()
    assert page.count('<span class="bad">FAILED</span>') >= 1
    assert "NoMatchingPeftModuleError: No modules were targeted" in page   # the error, in the failed row


def test_an_unreachable_mlflow_stops_the_run_before_any_data_is_read(harness, project_factory, tiny_bert,
                                                                     monkeypatch):
    from tasks.ops.tracking_check import TrackingUnavailable

    project = project_factory({"model": {"base": str(tiny_bert)}, "ops": {"tracking_check_seconds": 3}})
    url = f"http://127.0.0.1:{free_port()}"   # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    started = time.monotonic()
    state = specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke"),
                       return_state=True)
    elapsed = time.monotonic() - started
    assert state.is_failed()
    exc = state.result(raise_on_failure=False)
    assert isinstance(exc, TrackingUnavailable), exc
    assert url in str(exc) and "Nothing was trained" in str(exc)
    assert not (project / "data" / "raw").exists(), "no data was ingested"
    print(f"\nunreachable MLflow reported after {elapsed:.1f} s (check window 3 s)")
    assert elapsed < 60


def test_a_run_without_its_model_artifacts_is_not_registrable(tmp_path, harness, monkeypatch):
    import shutil
    from pathlib import Path

    import pandas as pd

    from tasks.ops.failures import missing_artifacts

    class Const(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: pd.DataFrame, params=None):
            return model_input

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")   # restored after
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("artifacts", artifact_location=(tmp_path / "artifacts").as_uri())
    saved = tmp_path / "lora"
    saved.mkdir()
    (saved / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    with mlflow.start_run(experiment_id=exp):
        info = mlflow.pyfunc.log_model(name="model", python_model=Const(), artifacts={"strategy": str(saved)},
                                       pip_requirements=["pandas"])
    assert missing_artifacts(info.model_uri) is None
    location = Path(MlflowClient().get_logged_model(info.model_id).artifact_location.removeprefix("file://"))
    shutil.rmtree(location / "artifacts")       # an upload cut off before the strategy's files
    assert "lacks the strategy's saved files" in missing_artifacts(info.model_uri)
    (location / "MLmodel").unlink()
    assert "lacks MLmodel" in missing_artifacts(info.model_uri)


def test_strategies_in_their_own_processes_use_warm_spares_and_leave_none_behind(harness, project_factory, tiny_bert):
    """ops.isolation: process, one after another: each strategy runs in a process started ahead of
    its job (it imported while the data was validated or the previous strategy trained)."""
    import psutil

    project = project_factory({"model": {"base": str(tiny_bert)}, "strategies": {"run": ["lora", "zero_shot"]},
                               "profiles": {"smoke": {"ops": {"isolation": "process"}}}})
    out = specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke"))
    assert set(out.models) == {"lora", "zero_shot"} and not out.failed
    left = [p for p in psutil.Process().children(recursive=True) if "tasks.ops.strategy_process" in " ".join(p.cmdline())]
    assert not left, f"spare processes outlived the flow: {left}"


def test_a_spare_that_died_is_replaced_and_an_unused_one_is_ended(tmp_path):
    from tasks.ops.isolate import Spares

    spares = Spares(f"sqlite:///{tmp_path / 'mlflow.db'}", jobs=2)
    first = spares.waiting
    first.kill()
    first.wait()
    assert spares.take(tmp_path / "job.pkl", tmp_path / "out.pkl", "lora") is None   # the caller starts one
    second = spares.waiting
    assert second is not None and second is not first and second.poll() is None   # the next job's spare
    spares.close()
    assert spares.waiting is None and second.poll() is not None
