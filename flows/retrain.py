"""The `retrain` flow (scheduled by the `retrain` deployment, weekly by default, or started by the
drift check with its reason): refresh the data through DVC, then run `specialize` only if data
(the source or the feedback table fold-feedback wrote), code or params changed since the last
successful run. It proposes a @challenger like any run and never promotes: reviewers do."""
from __future__ import annotations

from dataclasses import dataclass

from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger

from flows.inputs import RetrainInput, SpecializeInput
from flows.server_side import confine_params
from flows.specialize import SpecializeOutput, specialize
from tasks.config import load_settings
from tasks.data.dvc import feedback_table
from tasks.data.lock import data_steps_lock
from tasks.data.steps import ingest_data
from tasks.ops import retrain as decision
from tasks.ops.tracking_check import check_tracking
from tasks.tracking import code_version, configure, git_state, tracking_uri


@dataclass(frozen=True, kw_only=True)
class RetrainOutput:
    retrained: bool
    reason: str
    raw_md5: str
    specialize: SpecializeOutput | None = None


@flow(name="retrain", log_prints=True)
def retrain(run: RetrainInput = RetrainInput()) -> RetrainOutput:
    run = run.model_copy(update={"params_file": confine_params(run.params_file)})   # flows/server_side.py
    settings = load_settings(run.params_file, run.profile, run.strategies)
    check_tracking(tracking_uri(settings.root), settings.ops.tracking_check_seconds)
    experiment_id = configure(settings.root, settings.project.experiment)
    with data_steps_lock(settings.root, settings.ops.data_lock_timeout_seconds, "retrain", get_run_logger().warning):
        raw = ingest_data(settings)   # `dvc repro ingest`: a changed source is copied, hashed and versioned
    current = decision.Inputs(data=raw.md5, code=code_version(settings.root), params=settings.params_hash(),
                              commit=git_state(settings.root)[0],
                              feedback=feedback_table(settings.root, settings.feedback.folder)[1])
    last = decision.last_successful(MlflowClient(), experiment_id)
    verdict = decision.decide(current, *(last or (None, None)))
    logger = get_run_logger()
    if not verdict.retrain and not run.force:
        logger.info("retrain %s", verdict.reason)
        return RetrainOutput(retrained=False, reason=verdict.reason, raw_md5=raw.md5)
    logger.info("retraining: %s%s", verdict.reason if verdict.retrain else "forced",
                f" (started by: {run.trigger})" if run.trigger else "")
    out = specialize(SpecializeInput(params_file=run.params_file, profile=run.profile, strategies=run.strategies))
    MlflowClient().set_tag(out.parent_run_id, "retrain.reason", verdict.reason if verdict.retrain else "forced")
    if run.trigger:
        MlflowClient().set_tag(out.parent_run_id, "retrain.trigger", run.trigger[:5000])
    logger.info("proposed %s v%s (%s); @challenger %s. Promotion is a reviewer's call (`promote` deployment).",
                settings.project.registered_model, out.registered_version, out.candidate,
                "set" if out.challenger_set else "unchanged")
    return RetrainOutput(retrained=True, reason=verdict.reason if verdict.retrain else "forced", raw_md5=raw.md5,
                         specialize=out)
