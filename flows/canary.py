"""Canary flows for the Prefect deployments canary-start, canary-stop (reviewers' forms, the same
audited path as `adaptflow canary start|stop`) and canary-check (on a schedule: the pipeline
judges the running canary and rolls it back when it does worse; tasks/release/check.py)."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from flows.inputs import CanaryCheckInput, CanaryStartInput, CanaryStopInput


def _registry(params_file: str):
    from mlflow.tracking import MlflowClient

    from tasks.config import read_pipeline_account
    from tasks.tracking import use_store

    uri = use_store(Path(params_file).resolve().parent)
    return MlflowClient(), uri, read_pipeline_account(params_file)


@flow(name="canary-start", log_prints=True)
def canary_start(request: CanaryStartInput) -> str:
    from tasks.registry import canary

    client, uri, account = _registry(request.params_file)
    entry = canary.start(client, uri, request.model, request.version, request.share, request.reviewer, request.reason,
                         pipeline_account=account)
    get_run_logger().info(entry.line())
    return entry.line()


@flow(name="canary-stop", log_prints=True)
def canary_stop(request: CanaryStopInput) -> str:
    from tasks.registry import canary

    client, uri, account = _registry(request.params_file)
    entry = canary.stop(client, uri, request.model, request.reviewer, request.reason, pipeline_account=account)
    get_run_logger().info(entry.line())
    return entry.line()


@flow(name="canary-check", log_prints=True)
def canary_check(request: CanaryCheckInput) -> str:
    """Judge the running canary of each model once; the evidence page is a Prefect artifact too."""
    from tasks.config import load_settings
    from tasks.release.steps import check_models

    settings = load_settings(request.params_file, request.profile)
    client, uri, _ = _registry(request.params_file)
    results = check_models(client, uri, settings, request.models or [settings.project.registered_model])
    for result in results:
        get_run_logger().info(result.line())
        _artifact(result)
    return "\n".join(r.line() for r in results)


def _artifact(result) -> None:
    from prefect.artifacts import create_markdown_artifact

    if result.decision is None:
        return
    rows = "\n".join(f"| {name} | {t.canary_x}/{t.canary_n} | {t.champion_x}/{t.champion_n} | {t.diff:+.2%} | "
                     f"{t.lower:+.2%} .. {t.upper:+.2%} | {t.log_lr:.2f} / {t.boundary:.2f} |"
                     for name, t in result.decision.tests.items())
    key = "".join(c if c.isalnum() else "-" for c in f"canary-{result.model}").lower()[:100]
    create_markdown_artifact(key=key, description=f"canary check of {result.model}", markdown=(
        f"## Canary {result.model} v{result.canary_version} vs @champion v{result.champion_version}: "
        f"**{result.action}**\n\n{result.reason}\n\n| signal | canary | champion | difference | bounds | "
        f"log LR / boundary |\n|---|---|---|---|---|---|\n{rows}\n\nPage: `{result.page}` (also an artifact of MLflow "
        f"run {result.run_id})"))
