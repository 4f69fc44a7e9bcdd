"""Reviewer approval from the Prefect UI: the flow pauses after proposing a challenger and
waits for a typed answer (approve or reject, reason); approval promotes through the same audited
path as `adaptflow promote`, with its checks. A timeout changes nothing.

The Prefect form authenticates no one, so the name typed into it is never the identity: the
identity is the MLflow account this flow signs in with (tasks/registry/identity.py), and the
pipeline's account is refused. Where the flow runs under the pipeline's account (a tracking
server with accounts, infra/), an approval is therefore refused and recorded as such; the
reviewer promotes with `adaptflow promote` under their own account."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from mlflow.tracking import MlflowClient
from prefect import get_run_logger
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

import mlflow
from tasks.registry.governance import GovernanceError, identify, promote


class ReviewDecision(RunInput):
    """The form a reviewer fills in to resume the flow run."""

    approve: bool = Field(description="true: promote the challenger to @champion; false: reject it")
    reviewer: str | None = Field(None, description="optional: your MLflow account; the history records the "
                                                   "account this flow signs in with, and a different name is refused")
    reason: str = Field(min_length=1, description="why (kept in the audit history)")


@dataclass(frozen=True)
class ReviewOutcome:
    outcome: str               # approved | rejected | refused | timed_out
    reviewer: str | None = None
    reason: str | None = None


def _back_to_running() -> None:
    """After a pause times out Prefect still holds the run as paused and would end it Failed;
    a timeout means "no decision", so the run carries on and completes."""
    from prefect import get_client
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(FlowRunContext.get().flow_run.id, Running(), force=True)


def await_review(model: str, version: str, timeout_seconds: int, poll_seconds: int,
                 pipeline_account: str | None = None) -> ReviewOutcome:
    logger = get_run_logger()
    client = MlflowClient()
    logger.info("%s v%s is @challenger. Waiting up to %d s for a reviewer: resume this flow run in the "
                "Prefect UI with approve and reason.", model, version, timeout_seconds)
    try:
        answer = pause_flow_run(wait_for_input=ReviewDecision, timeout=timeout_seconds,
                                poll_interval=poll_seconds, key=f"review-{model}-v{version}")
    except FlowPauseTimeout:
        _back_to_running()
        client.set_model_version_tag(model, version, "review.outcome", "timed_out")
        logger.info("no reviewer answered within %d s: nothing changed", timeout_seconds)
        return ReviewOutcome("timed_out")
    return apply_review(client, mlflow.get_tracking_uri(), model, version, answer, pipeline_account, logger)


def apply_review(client: MlflowClient, tracking_uri: str, model: str, version: str, answer: ReviewDecision,
                 pipeline_account: str | None, logger) -> ReviewOutcome:
    """The reviewer's answer, under the identity this process signs in with (never the form's name)."""
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        who = identify(tracking_uri, answer.reviewer, answer.reason, pipeline_account)
        if answer.approve:
            entry = promote(client, tracking_uri, model, answer.reviewer, answer.reason, version=version,
                            pipeline_account=pipeline_account)
    except GovernanceError as exc:
        for key, value in {"review.outcome": "refused", "review.refused": str(exc)[:500], "review.at": at}.items():
            client.set_model_version_tag(model, version, key, value)
        logger.warning("review refused: %s; @champion unchanged. A reviewer can promote with `adaptflow promote "
                       "%s --version %s` under their own MLflow account.", exc, model, version)
        return ReviewOutcome("refused", None, answer.reason)
    outcome = "approved" if answer.approve else "rejected"
    for key, value in {"review.by": who.user, "review.identity": who.source, "review.reason": answer.reason,
                       "review.at": at, "review.outcome": outcome}.items():
        client.set_model_version_tag(model, version, key, value)
    logger.info("%s by %s (%s): %s", outcome, who.user, who.source, entry.line() if answer.approve else answer.reason)
    return ReviewOutcome(outcome, who.user, answer.reason)
