"""Reviewer flows, `promote` and `rollback`, for the Prefect deployments of the same names: the
same audited path as `adaptflow promote` / `rollback` (tasks/governance.py), from a form in
the Prefect UI; promote asks the human-review gate first (review.require_human, pinned by the
serving process like the pipeline account: tasks/review/gate.py). Served with a concurrency limit of 1, so two reviewers never interleave.

The pipeline's account, which may not move @champion, is the one the serving process was started
with (flows/server_side.py), never read from the params file the form names: a form naming a
missing file would otherwise skip the refusal. That file only locates the local store, and must
be in the project folder."""
from __future__ import annotations

import os
from pathlib import Path

from prefect import flow, get_run_logger

from flows.inputs import PromoteInput, RollbackInput


def reviewer_registry(params_file: str):
    from mlflow.tracking import MlflowClient

    from flows import server_side
    from tasks.tracking import use_store

    account = server_side.pipeline_account()   # refuses when the serving process did not pin it
    root = server_side.confining_root()
    if root is None:   # a reviewer flow always runs confined: it moves @champion
        raise server_side.ServerSideError(f"{server_side.PROJECT_ROOT_ENV} is not set in the process running "
                                          f"this flow; nothing changed. {server_side.HOW}")
    uri = use_store(Path(server_side.confine(params_file, "params_file", root)).parent)
    return MlflowClient(), uri, account


@flow(name="promote", log_prints=True)
def promote(request: PromoteInput) -> str:
    from flows import server_side
    from tasks.review import gate

    client, uri, account = reviewer_registry(request.params_file)
    # review.require_human from the serving process (or the confined params file), never the form
    requirement = server_side.review_requirement(server_side.confine_params(request.params_file))
    version = request.version
    entry = gate.promote(client, uri, request.model, request.reviewer, request.reason, version=version,
                         from_alias=None if version else request.from_alias, pipeline_account=account,
                         requirement=requirement)
    get_run_logger().info("%s (MLflow account: %s)", entry.line(), os.environ.get("MLFLOW_TRACKING_USERNAME", "-"))
    return entry.line()


@flow(name="rollback", log_prints=True)
def rollback(request: RollbackInput) -> str:
    from tasks.registry import governance

    client, uri, account = reviewer_registry(request.params_file)
    entry = governance.rollback(client, uri, request.model, request.reviewer, request.reason, pipeline_account=account)
    get_run_logger().info(entry.line())
    return entry.line()
