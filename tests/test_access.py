"""Access on a real `mlflow server --app-name basic-auth` on 127.0.0.1: what MLflow enforces,
what adaptflow enforces on top, and the gap between them (pinned, so we notice if it closes)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import auth_mlflow_server, env_for_subprocess
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

import mlflow

ADAPTFLOW = str(Path(sys.executable).parent / "adaptflow")
MODEL = "access-model"
ADMIN = ("admin", "admin-secret-1234")
USERS = {"adaptflow-pipeline": "pipeline-pw-12345", "reviewer-ana": "reviewer-ana-pw-1234",
         "viewer-bob": "viewer-bob-pw-1234"}   # MLflow requires 12+ characters


class Const(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None):
        return pd.DataFrame({"label": ["positive"] * len(model_input)})


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth")
    with auth_mlflow_server(root, ADMIN) as url:
        yield url, root


def as_user(url: str, user: str, password: str) -> MlflowClient:
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user, password
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    return MlflowClient(url)


@pytest.fixture(scope="module")
def accounts(auth_server):
    """The setup infra/README.md describes: the admin creates the registered model and gives the
    pipeline and the reviewers EDIT on it; everyone else reads (default_permission = READ)."""
    url, root = auth_server
    from mlflow.server.auth.client import AuthServiceClient

    as_user(url, *ADMIN)
    admin = AuthServiceClient(url)
    for user, password in USERS.items():
        admin.create_user(user, password)
    MlflowClient(url).create_registered_model(MODEL)
    for user in ("adaptflow-pipeline", "reviewer-ana"):
        admin.grant_user_permission(user, "registered_model", MODEL, "EDIT")
    # The pipeline registers two versions and proposes v2, as `adaptflow run` does.
    pipeline = as_user(url, "adaptflow-pipeline", USERS["adaptflow-pipeline"])
    exp = mlflow.create_experiment("access")
    for _ in range(2):
        with mlflow.start_run(experiment_id=exp):
            info = mlflow.pyfunc.log_model(name="m", python_model=Const(), pip_requirements=["pandas"])
        mlflow.register_model(info.model_uri, MODEL)
    pipeline.set_registered_model_alias(MODEL, "challenger", "2")
    yield url, root
    os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
    os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)


def adaptflow(url: str, root: Path, user: str, *args: str) -> subprocess.CompletedProcess:
    params = root / "params.yaml"
    params.write_text("project:\n  pipeline_account: adaptflow-pipeline\n")
    env = env_for_subprocess(MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_USERNAME=user,
                             MLFLOW_TRACKING_PASSWORD=USERS[user])
    return subprocess.run([ADAPTFLOW, *args, "--params", str(params)], env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_reader_cannot_move_aliases(accounts):
    url, _ = accounts
    viewer = as_user(url, "viewer-bob", USERS["viewer-bob"])
    with pytest.raises((RestException, MlflowException), match="PERMISSION_DENIED|Permission denied"):
        viewer.set_registered_model_alias(MODEL, "champion", "1")


def test_adaptflow_refuses_the_pipeline_account_and_lets_a_reviewer_promote(accounts):
    url, root = accounts
    refused = adaptflow(url, root, "adaptflow-pipeline", "promote", MODEL, "--from", "challenger",
                        "--reviewer", "cron", "--reason", "self-approval")
    assert refused.returncode == 2 and "pipeline's account (adaptflow-pipeline) may not move @champion" in refused.stderr
    done = adaptflow(url, root, "reviewer-ana", "promote", MODEL, "--from", "challenger",
                     "--reason", "reviewed the report")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "by reviewer-ana: reviewed the report" in adaptflow(url, root, "reviewer-ana", "history", MODEL).stdout
    client = as_user(url, "viewer-bob", USERS["viewer-bob"])   # anyone may read who is champion
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"


def test_the_documented_gap_and_how_adaptflow_catches_it(accounts):
    """MLflow 3.17 has no per-alias permission: EDIT (needed to register versions and set
    @challenger) also moves @champion through the raw API. adaptflow cannot prevent that; it
    refuses its own commands under the pipeline account, and a move made outside it breaks the
    audited chain, which `rollback` detects and refuses to build on."""
    url, root = accounts
    pipeline = as_user(url, "adaptflow-pipeline", USERS["adaptflow-pipeline"])
    pipeline.set_registered_model_alias(MODEL, "champion", "1")          # the gap, pinned
    assert str(pipeline.get_model_version_by_alias(MODEL, "champion").version) == "1"
    refused = adaptflow(url, root, "reviewer-ana", "rollback", MODEL, "--reviewer", "reviewer-ana", "--reason", "undo")
    assert refused.returncode == 2 and "was not set by adaptflow promote" in refused.stderr
    repaired = adaptflow(url, root, "reviewer-ana", "promote", MODEL, "--version", "2",
                         "--reason", "restore after an out-of-band move")
    assert repaired.returncode == 0 and "v1 -> v2" in repaired.stdout


def adaptflow_with(url: str, root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`adaptflow` with exactly the MLflow credentials in `env` (none inherited from this process)."""
    params = root / "params.yaml"
    params.write_text("project:\n  pipeline_account: adaptflow-pipeline\n")
    base = {k: v for k, v in env_for_subprocess().items()
            if k not in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")}
    return subprocess.run([ADAPTFLOW, *args, "--params", str(params)], env={**base, "MLFLOW_TRACKING_URI": url, **env},
                          capture_output=True, text=True, timeout=120)


def champion_of(url: str) -> str | None:
    try:
        return str(as_user(url, "viewer-bob", USERS["viewer-bob"]).get_model_version_by_alias(MODEL, "champion").version)
    except MlflowException:
        return None


def test_identity_comes_from_the_server_not_from_a_typed_name(accounts, tmp_path):
    """The pipeline account is refused when its credentials come from the
    credentials file or a token, a typed --reviewer is not an identity, and a token the server
    does not accept establishes no identity."""
    url, root = accounts
    other = "1" if champion_of(url) == "2" else "2"   # a move that would otherwise be allowed
    home = tmp_path / "home"
    (home / ".mlflow").mkdir(parents=True)
    (home / ".mlflow" / "credentials").write_text(
        f"[mlflow]\nmlflow_tracking_username = adaptflow-pipeline\nmlflow_tracking_password = {USERS['adaptflow-pipeline']}\n")
    by_file = adaptflow_with(url, root, {"HOME": str(home)}, "promote", MODEL, "--version", other,
                             "--reviewer", "cron", "--reason", "self")
    assert by_file.returncode == 2 and "pipeline's account (adaptflow-pipeline) may not move" in by_file.stderr
    impostor = adaptflow_with(url, root, {"MLFLOW_TRACKING_USERNAME": "reviewer-ana",
                                          "MLFLOW_TRACKING_PASSWORD": USERS["reviewer-ana"]},
                              "promote", MODEL, "--version", other, "--reviewer", "ben", "--reason", "as ben")
    assert impostor.returncode == 2 and "signed in to MLflow as 'reviewer-ana', not 'ben'" in impostor.stderr
    token = adaptflow_with(url, root, {"MLFLOW_TRACKING_TOKEN": "not-a-basic-auth-token", "HOME": str(tmp_path)},
                           "promote", MODEL, "--version", other, "--reviewer", "x",
                           "--reason", "who am I")
    assert token.returncode == 2 and ("did not accept your credentials" in token.stderr   # 401 without the auth
                                      or "could not establish who you are" in token.stderr)   # cache, 500 with it


def test_an_approval_under_the_pipeline_account_is_refused(accounts, monkeypatch):
    """--await-approval: the flow runs under the pipeline's account, so the form's approval
    (whatever name it types) promotes nothing and is recorded as refused."""
    import logging

    from tasks.registry import approval

    url, _ = accounts
    before = champion_of(url)
    target = "1" if before == "2" else "2"
    client = as_user(url, "adaptflow-pipeline", USERS["adaptflow-pipeline"])
    monkeypatch.setattr(approval, "pause_flow_run", lambda **kw: approval.ReviewDecision(
        approve=True, reviewer="ana", reason="looks fine"))
    monkeypatch.setattr(approval, "get_run_logger", lambda: logging.getLogger("test-approval"))
    out = approval.await_review(MODEL, target, 60, 1, pipeline_account="adaptflow-pipeline")
    assert out.outcome == "refused"
    assert client.get_model_version(MODEL, target).tags["review.outcome"] == "refused"
    assert champion_of(url) == before
