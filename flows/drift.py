"""The `drift-check` flow (the deployment of the same name, hourly by default, and `adaptflow
feedback drift`): for each model, the latest window of live inputs against the validation split,
and the @champion's feedback quality, each recorded in the outcome store; drift (when
drift.retrain is on) or feedback quality under feedback.retrain_below_quality starts `retrain`
with the finding as its trigger.

  the live window -> the validation split as reference -> the tests -> record
  the champion's latest feedback -> its quality -> record
  -> retrain, with the reasons?
"""
from __future__ import annotations

import pandas as pd
from prefect import flow, get_run_logger

from flows.inputs import DriftCheckInput


@flow(name="drift-check", log_prints=True)
def drift_check(request: DriftCheckInput = DriftCheckInput()) -> list[str]:
    from flows import server_side
    from tasks.config import load_settings
    from tasks.config.stores import database_url
    from tasks.outcomes.store import OutcomeStore
    from tasks.tracking import use_store

    params_file = server_side.confine_params(request.params_file)
    settings = load_settings(params_file, request.profile)
    use_store(settings.root)   # the registry: @champion, and the answering version's labels on validation
    store = OutcomeStore(database_url("outcomes.store", settings.outcomes.store, settings.root))
    try:
        lines = [_check_model(settings, store, model, params_file, request.profile)
                 for model in request.models or [settings.project.registered_model]]
    finally:
        store.dispose()
    return lines


def _check_model(settings, store, model: str, params_file: str, profile: str | None) -> str:
    """Drift, then feedback quality; either finding (when its setting asks) starts `retrain` once,
    with every finding as its trigger."""
    drift, drift_line = _drift(settings, store, model)
    quality = _feedback_quality(settings, store, model)
    get_run_logger().info(quality.reason)
    line = f"{drift_line}; {quality.reason}"
    reasons = ([drift.reason] if drift is not None and drift.drift and settings.drift.retrain else []) + \
              ([quality.reason] if quality.retrain else [])
    if reasons:
        from flows.inputs import RetrainInput
        from flows.retrain import retrain

        out = retrain(RetrainInput(params_file=params_file, profile=profile, force=True, trigger="; ".join(reasons)))
        return f"{line}; retrain: {out.reason}"
    return line


def _drift(settings, store, model: str):
    """(the drift report, or None without stored texts; its line), recorded in the outcome store."""
    from tasks.models.embedding import embed_texts
    from tasks.release.drift import check, labels_given, live_window, record

    logger = get_run_logger()
    window = live_window(store, model, settings.drift.window_requests)
    if window is None:
        line = f"{model}: no stored request texts (outcomes.store_texts is off, or nothing was answered yet)"
        logger.info(line)
        return None, line
    reference = pd.read_parquet(settings.path(settings.data.processed_dir) / "validation.parquet")
    texts = reference["text"].astype(str).tolist()
    # A classifier's shown labels against the labels the same version gives validation (not its true labels).
    labels = labels_given(model, window.answered_most, texts) if window.labels else []
    report = check(model, window.texts, window.labels, texts, labels, embed_texts, settings.drift)
    record(store, report, ",".join(window.versions))
    logger.info(report.reason)
    return report, report.reason


def _feedback_quality(settings, store, model: str):
    """The @champion version's feedback quality (tasks/release/feedback_quality.py), recorded."""
    from mlflow.tracking import MlflowClient

    from tasks.registry.canary import current_champion
    from tasks.release.feedback_quality import feedback_quality, record

    # No @champion yet: None, and every version's feedback counts.
    verdict = feedback_quality(store, model, current_champion(MlflowClient(), model), settings.feedback)
    record(store, verdict)
    return verdict
