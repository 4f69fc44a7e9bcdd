"""MLflow failing mid-run: the tracking server is stopped while strategies train and started
again on the same port a few seconds later. MLflow's client retries its requests across the gap
(7 retries with backoff), the run finishes, and every registered version has its artifacts."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import env_for_subprocess
from mlflow.tracking import MlflowClient

from tasks.ops.failures import missing_artifacts
from tasks.ops.servers import free_port, start_mlflow

ADAPTFLOW = str(Path(sys.executable).parent / "adaptflow")
EXPERIMENT = "adaptflow-rotten-tomatoes"
MODEL = "rotten-tomatoes-sentiment"
OUTAGE_SECONDS = 10


def children(url: str) -> list:
    client = MlflowClient(url)
    try:
        exp = client.get_experiment_by_name(EXPERIMENT)
        return [r for r in client.search_runs([exp.experiment_id]) if "strategy" in r.data.tags] if exp else []
    except Exception:
        return []


def test_an_mlflow_restart_mid_run_is_ridden_out(project_factory, tiny_bert, tmp_path, monkeypatch):
    port = free_port()
    backend, artifacts = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts"
    server = start_mlflow(port, backend, artifacts, tmp_path / "mlflow-1.log").wait_healthy()
    project = project_factory({"model": {"base": str(tiny_bert)},
                               "strategies": {"run": ["zero_shot", "lora", "full_finetune"]}})
    env = env_for_subprocess(MLFLOW_TRACKING_URI=server.url)
    env.pop("PREFECT_API_URL", None)
    run = subprocess.Popen([ADAPTFLOW, "run", "--params", str(project / "params.yaml"), "--profile", "smoke"],
                           env=env, cwd=project, stdout=open(tmp_path / "run.log", "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 900
        while not children(server.url):       # the first strategy has started logging
            assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.5)
        server.stop()
        stopped = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        server = start_mlflow(port, backend, artifacts, tmp_path / "mlflow-2.log").wait_healthy()
        gap = time.monotonic() - stopped
        code = run.wait(timeout=1800)
        log = (tmp_path / "run.log").read_text()
        assert code == 0, log[-4000:]
        runs = children(server.url)
        assert sorted(r.data.tags["strategy"] for r in runs) == ["full_finetune", "lora", "zero_shot"]
        assert all(r.info.status == "FINISHED" for r in runs), [(r.data.tags["strategy"], r.info.status) for r in runs]
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
        import mlflow

        mlflow.set_tracking_uri(server.url)
        client = MlflowClient(server.url)
        version = client.get_model_version_by_alias(MODEL, "challenger")
        logged = next(r for r in runs if r.info.run_id == version.tags["run_id"])
        model_id = logged.outputs.model_outputs[0].model_id
        assert missing_artifacts(f"models:/{model_id}") is None
        print(f"\nMLflow down for {gap:.0f} s mid-run; the run finished, v{version.version} has its artifacts")
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        server.stop()
