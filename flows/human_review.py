"""The review-create flow, for the Prefect deployment of the same name: a blinded side-by-side
review session built from a form (ReviewCreateInput), the same path as `adaptflow review create`
(tasks/review/steps.py). The form's params file must be in the project folder (flows/server_side.py)."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from flows.inputs import ReviewCreateInput


@flow(name="review-create", log_prints=True)
def review_create(request: ReviewCreateInput) -> str:
    from mlflow.tracking import MlflowClient

    from flows import server_side
    from tasks.config import load_settings
    from tasks.review import steps
    from tasks.tracking import use_store

    params_file = server_side.confine_params(request.params_file)
    settings = load_settings(params_file, request.profile)
    use_store(Path(params_file).resolve().parent)
    session = steps.create(MlflowClient(), settings, model=request.model, a=request.a, b=request.b, n=request.n,
                           source=request.source, reviewers=request.reviewers, overlap=request.overlap,
                           seed=request.seed)
    line = (f"review session {session.id}: {len(session.items)} items of {session.model} v{session.a} vs "
            f"v{session.b}, {session.reviewers} reviewer seat(s); reviewers judge at `adaptflow review serve "
            f"{session.id}`")
    get_run_logger().info(line)
    return line
