"""What a failed strategy leaves behind, and what may be registered.

A strategy that fails (an exception, or its process killed) ends as a child run with status
FAILED and its error in tags, so the report shows it next to the others; the flow goes on with
the strategies that finished. A version is registered only from a run whose model artifacts
are all in the store.
"""
from __future__ import annotations

import traceback

from mlflow.tracking import MlflowClient

# MLflow 3 keeps tag values up to 8,000 characters; the end of a traceback is the useful part.
MAX_ERROR_CHARS = 4000


def error_text(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text if len(text) <= MAX_ERROR_CHARS else "..." + text[-MAX_ERROR_CHARS:]


def record_failure(experiment_id: str, parent_run_id: str, strategy: str, exc: BaseException,
                   attempt: int, will_retry: bool) -> str:
    """Mark the strategy's open (or just failed) child run FAILED with the error; create one if the
    strategy failed before its run started. Returns the run id."""
    client = MlflowClient()
    runs = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}' and "
                                               f"tags.strategy = '{strategy}'")
    open_runs = [r for r in runs if r.info.status in ("RUNNING", "FAILED", "KILLED") and "error" not in r.data.tags]
    tags = {"error": error_text(exc), "error.type": type(exc).__name__, "attempt": str(attempt),
            "retried": str(will_retry).lower()}
    if open_runs:
        run_id = open_runs[0].info.run_id
    else:
        run_id = client.create_run(experiment_id, run_name=strategy,
                                   tags={"mlflow.parentRunId": parent_run_id, "strategy": strategy}).info.run_id
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    client.set_terminated(run_id, status="FAILED")
    return run_id


def _files(client: MlflowClient, model_id: str, path: str | None = None) -> list[str]:
    out = []
    for a in client.list_logged_model_artifacts(model_id, path):
        out += _files(client, model_id, a.path) if a.is_dir else [a.path]
    return out


def missing_artifacts(model_uri: str) -> str | None:
    """None when the logged model (models:/<model id>) has its MLmodel file and the strategy's
    saved files in the store; else what is missing. A run whose upload was cut off must not
    become a version."""
    client = MlflowClient()
    model_id = model_uri.rstrip("/").rsplit("/", 1)[-1]
    try:
        files = _files(client, model_id)
    except Exception as exc:   # the store's own error type varies (REST, file, S3)
        return f"cannot list the artifacts of {model_uri}: {type(exc).__name__}: {exc}"
    missing = [] if "MLmodel" in files else ["MLmodel"]
    if not any(f.startswith("artifacts/") for f in files):
        missing.append("the strategy's saved files (artifacts/)")
    return f"{model_uri} lacks {' and '.join(missing)}" if missing else None


def registrable(results: list):
    """The strategy results whose model artifacts are complete; the others are logged and left
    out of the registration (their runs stay, marked with what is missing)."""
    from prefect import get_run_logger

    kept = []
    for r in results:
        problem = missing_artifacts(r.model_uri)
        if problem is None:
            kept.append(r)
            continue
        get_run_logger().error("%s is not registrable: %s", r.strategy, problem)
        MlflowClient().set_tag(r.run_id, "registrable", f"no: {problem}"[:MAX_ERROR_CHARS])
    if not kept:
        raise RuntimeError("no finished strategy has complete model artifacts in the store; nothing registered")
    return kept
