"""The `drift-check` flow (the deployment of the same name, hourly by default, and `adaptflow
feedback drift`): for each model, the latest window of live inputs against the validation split,
recorded in the outcome store; drift starts `retrain` with the finding as its trigger when
drift.retrain is on.

  the live window -> the validation split as reference -> the tests -> record -> retrain?
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

    params_file = server_side.confine_params(request.params_file)
    settings = load_settings(params_file, request.profile)
    store = OutcomeStore(database_url("outcomes.store", settings.outcomes.store, settings.root))
    try:
        lines = [_check_model(settings, store, model, params_file, request.profile)
                 for model in request.models or [settings.project.registered_model]]
    finally:
        store.dispose()
    return lines


def _check_model(settings, store, model: str, params_file: str, profile: str | None) -> str:
    from tasks.models.embedding import embed_texts
    from tasks.release.drift import check, live_window, record

    logger = get_run_logger()
    window = live_window(store, model, settings.drift.window_requests)
    if window is None:
        line = f"{model}: no stored request texts (outcomes.store_texts is off, or nothing was answered yet)"
        logger.info(line)
        return line
    reference = pd.read_parquet(settings.path(settings.data.processed_dir) / "validation.parquet")
    labels = reference["label"].astype(str).tolist() if "label" in reference.columns else []
    report = check(model, window.texts, window.labels, reference["text"].astype(str).tolist(), labels,
                   embed_texts, settings.drift)
    record(store, report, ",".join(window.versions))
    logger.info(report.reason)
    if report.drift and settings.drift.retrain:
        from flows.inputs import RetrainInput
        from flows.retrain import retrain

        out = retrain(RetrainInput(params_file=params_file, profile=profile, force=True, trigger=report.reason))
        return f"{report.reason}; retrain: {out.reason}"
    return report.reason
