"""Deployments on a real Prefect server and a real MLflow server, both on 127.0.0.1: runs
created through the API exactly as the UI does (create a flow run from a deployment, with
parameters) execute on the process `adaptflow deploy` serves them from, and their results land
in the MLflow server; `retrain` skips when nothing changed; the cron schedule of `retrain`
makes the scheduler create runs."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import basic_auth_ini, env_for_subprocess, make_project
from mlflow.tracking import MlflowClient

from tasks.ops.servers import free_port, start_mlflow, start_prefect

ADAPTFLOW = str(Path(sys.executable).parent / "adaptflow")
EXPERIMENT = "adaptflow-rotten-tomatoes"
ADMIN = ("admin", "admin-secret-1234")
MODEL = "rotten-tomatoes-sentiment"


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 60 s."""
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("servers")
    # The scheduler looks for deployments needing runs every 5 s here (60 s by default).
    prefect = start_prefect(free_port(), root / "prefect", scheduler_loop_seconds=5)
    # With basic-auth: reviewer actions need an identity the server vouches for (here the admin,
    # for this process and the deploy processes it starts, which inherit the environment).
    mlflow = start_mlflow(free_port(), f"sqlite:///{root / 'mlflow.db'}", root / "artifacts", root / "mlflow.log",
                          auth_config=basic_auth_ini(root, ADMIN), secret_key="test-only-secret")
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN
    try:
        started = time.monotonic()
        prefect.wait_healthy()
        mlflow.wait_healthy()
        print(f"\nservers healthy after {time.monotonic() - started:.0f} s")
        yield prefect, mlflow
    finally:
        mlflow.stop()
        prefect.stop()
        os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
        os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)


@pytest.fixture(scope="module")
def served(servers, tmp_path_factory, tiny_bert):
    """`adaptflow deploy` against the server, serving the four deployments for a throwaway project.
    One deploy process for the module's tests, as a user keeps one running (its start-up, imports
    and four registrations, is paid once)."""
    prefect, mlflow = servers
    project = make_project(tmp_path_factory.mktemp("served"),
                           {"model": {"base": str(tiny_bert)}, "strategies": {"run": ["zero_shot"]}})
    env = env_for_subprocess(PREFECT_API_URL=prefect.url, MLFLOW_TRACKING_URI=mlflow.url)
    log = project / "deploy.log"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_API_URL", prefect.url)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        proc = subprocess.Popen([ADAPTFLOW, "deploy", "--params", str(project / "params.yaml"), "--profile", "smoke"],
                                env=env, cwd=project, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        try:
            wait_for_deployments(["specialize/specialize", "retrain/retrain", "promote/promote",
                                  "rollback/rollback"], proc, log)
            yield project, prefect, mlflow, log
        finally:
            _stop(proc)


def wait_for_deployments(names, proc, log, timeout=300):
    from prefect import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                return [client.read_deployment_by_name(n) for n in names]
            except Exception:
                time.sleep(2)
    pytest.fail(f"deployments not registered in {timeout} s:\n{log.read_text()[-3000:]}")


def run(name: str, parameters: dict | None = None):
    """What the UI's "Run" (custom run) does: a flow run created from the deployment, with parameters."""
    from prefect.deployments import run_deployment

    started = time.monotonic()
    flow_run = run_deployment(name, parameters=parameters or {}, timeout=900, poll_interval=2)
    return flow_run, time.monotonic() - started


def logs_of(flow_run_id, expected: str, timeout: float = 60) -> str:
    """The run's log lines once `expected` is among them (logs reach the API in batches, after
    the state does)."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
            text = "\n".join(entry.message for entry in logs)
            if expected in text or time.monotonic() > deadline:
                return text
            time.sleep(2)


def parents(mlflow_url: str, experiment: str = EXPERIMENT):
    client = MlflowClient(mlflow_url)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return client, [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def test_work_pool_registration_runs_on_a_prefect_worker(servers, project_factory, tiny_bert, monkeypatch):
    """`adaptflow deploy --work-pool` (the Kubernetes path) registers and returns; a worker of that
    pool (a process worker here: no cluster on this machine) picks the run up and executes it.
    First in the module, before `served` starts a runner of the same deployment name; its own
    experiment and model, so the runs and aliases the later tests count are theirs alone."""
    prefect, mlflow = servers
    project = project_factory({"model": {"base": str(tiny_bert)}, "strategies": {"run": ["zero_shot"]},
                               "project": {"experiment": "work-pool", "registered_model": "work-pool-model"}})
    monkeypatch.setenv("PREFECT_API_URL", prefect.url)
    # A work pool's worker is started by the operator, not by `adaptflow deploy`: it carries what
    # a form may not choose in its environment (flows/server_side.py; the ConfigMap in Kubernetes).
    env = env_for_subprocess(PREFECT_API_URL=prefect.url, MLFLOW_TRACKING_URI=mlflow.url,
                             ADAPTFLOW_PROJECT_ROOT=str(project), ADAPTFLOW_PIPELINE_ACCOUNT="")
    created = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", "adaptflow-test", "--type",
                              "process", "--overwrite"], env=env, capture_output=True, text=True, timeout=300)
    assert created.returncode == 0, created.stdout + created.stderr
    done = subprocess.run([ADAPTFLOW, "deploy", "--work-pool", "adaptflow-test", "--only", "specialize", "--params", str(project / "params.yaml"), "--profile", "smoke"],
                          env=env, cwd=project, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "registered 1 deployment(s) for work pool adaptflow-test" in done.stdout, \
        (done.stdout[-2000:], done.stderr[-3000:])
    log = project / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "adaptflow-test",
                               "--type", "process"], env=env, cwd=project, stdout=open(log, "w"),
                              stderr=subprocess.STDOUT)
    try:
        before = len(parents(mlflow.url, "work-pool")[1])
        flow_run, took = run("specialize/specialize", {"run": {"params_file": str(project / "params.yaml"),
                                                               "profile": "smoke"}})
        assert flow_run.state.is_completed(), (flow_run.state, log.read_text()[-3000:])
        assert flow_run.work_pool_name == "adaptflow-test"
        assert len(parents(mlflow.url, "work-pool")[1]) == before + 1
        print(f"\nwork-pool deployment run on a process worker: {took:.0f} s")
    finally:
        _stop(worker)


def test_deployment_runs_from_the_api_execute_on_the_served_process(served):
    project, prefect, mlflow, log = served
    specialize_run, took = run("specialize/specialize", {"run": {"params_file": str(project / "params.yaml"),
                                                                 "profile": "smoke", "strategies": ["zero_shot"]}})
    assert specialize_run.state.is_completed(), (specialize_run.state, log.read_text()[-3000:])
    client, runs = parents(mlflow.url)
    assert [r.info.status for r in runs] == ["FINISHED"]
    version = client.get_model_version_by_alias(MODEL, "challenger")
    assert version.tags["parent_run_id"] == runs[0].info.run_id
    print(f"\nspecialize deployment run: {took:.0f} s; registered v{version.version}")

    first, took_first = run("retrain/retrain")     # code.version etc. as the specialize run: it skips
    assert first.state.is_completed(), (first.state, log.read_text()[-3000:])
    text = logs_of(first.id, "retrain skipped")
    assert "retrain skipped: data" in text, text
    assert len(parents(mlflow.url)[1]) == 1, "nothing retrained"

    params = project / "params.yaml"
    params.write_text(params.read_text().replace("split_seed: 13", "split_seed: 14"))   # params changed
    second, took_second = run("retrain/retrain")
    assert second.state.is_completed(), (second.state, log.read_text()[-3000:])
    text = logs_of(second.id, "changed since")
    assert "changed since the last successful run: params" in text, text
    client, runs = parents(mlflow.url)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert "champion" not in client.get_registered_model(MODEL).aliases, "retrain never promotes"
    print(f"retrain: skipped in {took_first:.0f} s; retrained in {took_second:.0f} s")

    promoted, _ = run("promote/promote", {"request": {"model": MODEL, "from_alias": "challenger",
                                                      "reason": "reviewed the report",
                                                      "params_file": str(project / "params.yaml")}})
    assert promoted.state.is_completed(), (promoted.state, log.read_text()[-3000:])
    assert "champion" in client.get_registered_model(MODEL).aliases
    from conftest import read_history

    assert read_history(client, MODEL)[-1].reviewer == ADMIN[0]   # the signed-in account, not a typed name


def test_the_retrain_cron_schedule_gets_runs_from_the_scheduler(served):
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    project, prefect, mlflow, log = served
    started = time.monotonic()
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("retrain/retrain")
        assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * 1"]
        while time.monotonic() - started < 180:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
            scheduled = [r for r in runs if r.auto_scheduled and r.state and r.state.is_scheduled()]
            if len(scheduled) >= 3:
                break
            time.sleep(2)
    assert len(scheduled) >= 3, runs
    times = sorted(r.expected_start_time for r in scheduled)
    assert all(t.weekday() == 0 and t.hour == 3 for t in times), times   # Mondays, 03:00 UTC
    print(f"\nscheduler created {len(scheduled)} retrain runs in {time.monotonic() - started:.0f} s: "
          f"{', '.join(t.isoformat() for t in times[:3])}")
