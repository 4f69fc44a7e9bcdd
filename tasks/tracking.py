"""MLflow setup and the run hierarchy: one parent run per flow run, one child per strategy."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow
from mlflow.tracking import MlflowClient


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI when set; otherwise the local store under mlflow/ (sqlite)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow' / 'mlflow.db').resolve()}"


def use_store(root: Path) -> str:
    """Point MLflow tracking and registry at the project's store; returns its URI."""
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri.startswith("sqlite:///"):
        (root / "mlflow").mkdir(exist_ok=True)
    return uri


def configure(root: Path, experiment: str) -> str:
    """Point MLflow at the store and return the experiment id (created on first use)."""
    uri = use_store(root)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    # The local store keeps artifacts next to its database; a server decides for itself.
    location = (root / "mlflow" / "artifacts").resolve().as_uri() if uri.startswith("sqlite:") else None
    return mlflow.create_experiment(experiment, artifact_location=location)


@contextmanager
def parent_run(experiment_id: str, run_name: str, tags: dict[str, str]) -> Iterator[str]:
    """A parent run that ends FAILED (not lost, not left RUNNING) when the body raises."""
    client = MlflowClient()
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    try:
        yield run.info.run_id
    except BaseException:
        client.set_terminated(run.info.run_id, status="FAILED")
        raise
    client.set_terminated(run.info.run_id, status="FINISHED")


def log_json(run_id: str, obj: object, artifact_file: str) -> None:
    MlflowClient().log_text(run_id, json.dumps(obj, indent=2, default=str), artifact_file)
