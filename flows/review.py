"""Reviewer flows, `promote` and `rollback`, for the Prefect deployments of the same names: the
same audited path as `adaptflow promote` / `rollback` (tasks/governance.py), from a form in
the Prefect UI. Served with a concurrency limit of 1, so two reviewers never interleave."""
from __future__ import annotations

import os
from pathlib import Path

from prefect import flow, get_run_logger

from flows.inputs import PromoteInput, RollbackInput


def _registry(params_file: str):
    from mlflow.tracking import MlflowClient

    from tasks.config import read_pipeline_account
    from tasks.tracking import use_store

    uri = use_store(Path(params_file).resolve().parent)
    account = read_pipeline_account(params_file)
    return MlflowClient(), uri, account


@flow(name="promote", log_prints=True)
def promote(request: PromoteInput) -> str:
    from tasks.registry import governance

    client, uri, account = _registry(request.params_file)
    version = request.version
    entry = governance.promote(client, uri, request.model, request.reviewer, request.reason, version=version,
                               from_alias=None if version else request.from_alias, pipeline_account=account)
    get_run_logger().info("%s (MLflow account: %s)", entry.line(), os.environ.get("MLFLOW_TRACKING_USERNAME", "-"))
    return entry.line()


@flow(name="rollback", log_prints=True)
def rollback(request: RollbackInput) -> str:
    from tasks.registry import governance

    client, uri, account = _registry(request.params_file)
    entry = governance.rollback(client, uri, request.model, request.reviewer, request.reason, pipeline_account=account)
    get_run_logger().info(entry.line())
    return entry.line()
