"""Reviewer promotion, rollback and the audit history on a real MLflow store (sqlite)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import env_for_subprocess, fresh_store
from mlflow.tracking import MlflowClient

import mlflow
from tasks.registry.governance import (
    AuditEntry,
    GovernanceError,
    champion_stack,
    metric_deltas,
    promote,
    rollback,
)
from conftest import read_history

MODEL = "gov-model"
ADAPTFLOW = str(Path(sys.executable).parent / "adaptflow")


class Echo(mlflow.pyfunc.PythonModel):
    """Answers with the version it was logged as, so a load shows which version it got."""

    def __init__(self, label: str):
        self.label = label

    def predict(self, context, model_input: pd.DataFrame, params=None):
        return pd.DataFrame({"version": [self.label] * len(model_input)})


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A project folder with a sqlite store holding MODEL v1..v4 (metrics as version tags)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "params.yaml").write_text("{}\n")
    uri = fresh_store(tmp_path)
    exp = mlflow.create_experiment("gov", artifact_location=(tmp_path / "art").as_uri())
    for i in range(1, 5):
        with mlflow.start_run(experiment_id=exp):
            info = mlflow.pyfunc.log_model(name="m", python_model=Echo(str(i)),
                                            pip_requirements=["pandas"])   # inferring them: 1.7 s a model
        mlflow.register_model(info.model_uri, MODEL, tags={"metric.test_accuracy": str(0.7 + i / 100)})
    return tmp_path, uri


def champion_answer() -> str:
    return mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(pd.DataFrame({"text": ["x"]}))["version"][0]


def entry(seq, action, version):
    return AuditEntry(seq, action, version, None, "r", "why", "t")


def test_champion_stack_replays_promotions_and_rollbacks():
    assert champion_stack([entry(1, "promote", "1"), entry(2, "promote", "2"), entry(3, "rollback", "1"),
                           entry(4, "promote", "3")]) == ["1", "3"]
    assert metric_deltas({"a": 0.8, "b": 1.0}, {"a": 0.75}) == {"a": pytest.approx(0.05)}
    assert metric_deltas({"a": 0.8}, None) == {}


def test_promote_rollback_promote_cycle(store):
    _, uri = store
    client = MlflowClient()
    promote(client, uri, MODEL, "ana", "first release", version="1")
    assert champion_answer() == "1"
    e2 = promote(client, uri, MODEL, "ben", "better on test", version="2")
    assert champion_answer() == "2" and e2.previous == "1"
    assert e2.deltas["test_accuracy"] == pytest.approx(0.01)
    back = rollback(client, uri, MODEL, "ana", "v2 misbehaves in production")
    assert back.version == "1" and back.previous == "2" and champion_answer() == "1"
    promote(client, uri, MODEL, "ben", "fixed", version="3")
    assert champion_answer() == "3"
    history = read_history(client, MODEL)
    assert [(e.seq, e.action, e.version, e.previous) for e in history] == [
        (1, "promote", "1", None), (2, "promote", "2", "1"), (3, "rollback", "1", "2"), (4, "promote", "3", "1")]
    tags = client.get_model_version(MODEL, "3").tags
    assert tags["champion.by"] == "ben" and tags["champion.previous"] == "1" and tags["champion.reason"] == "fixed"
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 4   # nothing deleted


def test_rollback_walks_back_and_stops_at_the_first_champion(store):
    _, uri = store
    client = MlflowClient()
    for v in ("1", "2", "3"):
        promote(client, uri, MODEL, "ana", f"release {v}", version=v)
    assert rollback(client, uri, MODEL, "ana", "bad").version == "2"
    assert rollback(client, uri, MODEL, "ana", "also bad").version == "1"
    with pytest.raises(GovernanceError, match="no earlier champion"):
        rollback(client, uri, MODEL, "ana", "and again")
    assert champion_answer() == "1" and len(read_history(client, MODEL)) == 5


def test_refusals_change_nothing(store):
    _, uri = store
    client = MlflowClient()
    with pytest.raises(GovernanceError, match="no earlier champion"):
        rollback(client, uri, MODEL, "ana", "nothing to undo")
    with pytest.raises(GovernanceError, match="has no @challenger"):
        promote(client, uri, MODEL, "ana", "go", from_alias="challenger")
    with pytest.raises(GovernanceError, match="has no version 9"):
        promote(client, uri, MODEL, "ana", "go", version="9")
    with pytest.raises(GovernanceError, match="--reason must say why"):
        promote(client, uri, MODEL, "ana", " ", version="1")
    assert read_history(client, MODEL) == []
    client.set_registered_model_alias(MODEL, "challenger", "4")
    assert promote(client, uri, MODEL, "ana", "challenger wins", from_alias="challenger").version == "4"
    with pytest.raises(GovernanceError, match="already @champion"):
        promote(client, uri, MODEL, "ana", "again", version="4")


def test_two_reviewers_at_once_lose_nothing(store):
    """Two processes promote alternately; every action is in the history, each entry's
    `previous` is the entry before it, and @champion is the last entry's version."""
    root, _ = store
    script = "; ".join(f"{ADAPTFLOW} promote {MODEL} --version {{v{i}}} --reviewer {{who}} --reason r{i}"
                       for i in range(2))
    procs = [subprocess.Popen(["bash", "-c", script.format(v0=a, v1=b, who=who)], cwd=root,
                              env=env_for_subprocess(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a, b, who in (("1", "3", "ana"), ("2", "4", "ben"))]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    client = MlflowClient()
    history = read_history(client, MODEL)
    assert len(history) == 4 and sorted(e.version for e in history) == ["1", "2", "3", "4"]
    for before, after in zip(history, history[1:]):
        assert after.previous == before.version
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == history[-1].version


def test_history_cli(store):
    root, _ = store
    run = lambda *a: subprocess.run([ADAPTFLOW, *a], cwd=root, env=env_for_subprocess(),
                                    capture_output=True, text=True, timeout=120)
    assert "no @champion moves yet" in run("history", MODEL).stdout
    assert run("promote", MODEL, "--version", "2", "--reviewer", "ana", "--reason", "ship it").returncode == 0
    out = run("history", MODEL).stdout
    assert "#1" in out and "promote" in out and "v- -> v2" in out and "by ana: ship it" in out
    failed = run("rollback", MODEL, "--reviewer", "ana", "--reason", "oops")
    assert failed.returncode == 2 and "no earlier champion" in failed.stderr


def test_no_identity_no_action(tmp_path, monkeypatch):
    """A tracking server without authentication cannot say who acts: refused. The pipeline
    account is recognised in ~/.mlflow/credentials, not only in MLFLOW_TRACKING_USERNAME."""
    import http.server
    import threading

    from tasks.registry.identity import establish, refuse_pipeline_account

    class NoAuth(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoAuth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(GovernanceError, match="runs without authentication"):
            establish(f"http://127.0.0.1:{server.server_address[1]}", "ana")
    finally:
        server.shutdown()
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text("[mlflow]\nmlflow_tracking_username = pipe\n")
    with pytest.raises(GovernanceError, match=r"pipeline's account \(pipe\)"):
        refuse_pipeline_account("pipe")
    assert establish("sqlite:///x.db", "ana").source.startswith("local store")
