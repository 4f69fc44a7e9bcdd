"""Fault isolation: a failing strategy is retried, then recorded as a FAILED child run
with its error while the others finish and the best of them is registered; an unreachable
MLflow at start stops the run in seconds, before any data is read; only runs whose model
artifacts are all in the store can become versions. Real Prefect, MLflow, DVC; no mocks."""
from __future__ import annotations

import os
import pickle
import signal
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


def test_strategies_in_their_own_processes_are_forked_warm_and_leave_none_behind(harness, project_factory, tiny_bert):
    """ops.isolation: process, one after another: each strategy runs in a child the fork server
    forked (it imported while the data was validated); nothing outlives the flow."""
    import psutil

    project = project_factory({"model": {"base": str(tiny_bert)}, "strategies": {"run": ["lora", "zero_shot"]},
                               "profiles": {"smoke": {"ops": {"isolation": "process"}}}})
    out = specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke"))
    assert set(out.models) == {"lora", "zero_shot"} and not out.failed
    left = [p for p in psutil.Process().children(recursive=True) if "tasks.ops.strategy_process" in " ".join(p.cmdline())]
    assert not left, f"strategy processes outlived the flow: {left}"


def _job_that_exits(tmp_path, code: int):
    """A job file whose unpickling ends the process with `code`: the child's exit is what the
    server reports, whatever the job."""
    job = tmp_path / f"exit{code}.pkl"
    job.write_bytes(pickle.dumps(_Exit(code)))
    return job


class _Exit:
    def __init__(self, code: int):
        self.code = code

    def __reduce__(self):
        return os._exit, (self.code,)


def test_the_fork_server_forks_a_child_per_job_reports_its_exit_and_ends_at_close(tmp_path):
    from tasks.ops.fork_server import ForkServer

    server = ForkServer(f"sqlite:///{tmp_path / 'mlflow.db'}")
    first = server.fork(_job_that_exits(tmp_path, 3), tmp_path / "out.pkl", "lora")
    assert first is not None and first.pid != server.process.pid
    assert first.wait() == 3
    second = server.fork(_job_that_exits(tmp_path, 0), tmp_path / "out.pkl", "zero_shot")
    assert second.pid != first.pid and second.wait() == 0
    server.close()
    assert server.process.poll() is not None   # ended at once, not after its imports


def test_a_killed_child_is_reported_as_killed_and_a_dead_server_forks_nothing(tmp_path):
    import psutil

    from tasks.ops.fork_server import ForkServer

    server = ForkServer(f"sqlite:///{tmp_path / 'mlflow.db'}")
    job = tmp_path / "sleep.pkl"
    job.write_bytes(pickle.dumps(_Sleep()))
    child = server.fork(job, tmp_path / "out.pkl", "lora")
    assert psutil.Process(child.pid).ppid() == server.process.pid   # forked, not started anew
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL      # run_in_process names the signal
    server.process.kill()
    server.process.wait()
    assert server.fork(job, tmp_path / "out.pkl", "lora") is None   # the caller starts a process
    server.close()


def test_a_fork_server_started_early_is_the_one_its_flow_takes_unless_it_died(tmp_path):
    """`adaptflow run` starts the fork server before its imports; the flow takes that one (not a
    second), a dead one is replaced, and one no flow took is closed when the command ends."""
    from tasks.ops import fork_server

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    early = fork_server.start_early(uri)
    taken = fork_server.started_for(uri)
    assert taken is early and taken.process.poll() is None
    taken.close()
    dead = fork_server.start_early(uri)
    dead.process.kill()
    dead.process.wait()
    fresh = fork_server.started_for(uri)
    assert fresh is not dead and fresh.process.poll() is None
    fresh.close()
    unused = fork_server.start_early(uri)
    fork_server.close_unused()
    assert unused.process.poll() is not None
    after = fork_server.started_for(uri)   # nothing left over: a new one
    assert after is not unused
    after.close()


class _Sleep:
    def __reduce__(self):
        import time

        return time.sleep, (600,)
