"""Reviewer approval from the Prefect UI: the flow pauses after proposing a challenger and
waits for a typed answer (approve or reject, reviewer, reason); approval promotes through the
same audited path as `adaptflow promote`. A timeout changes nothing."""
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
from tasks.registry.governance import promote


class ReviewDecision(RunInput):
    """The form a reviewer fills in to resume the flow run."""

    approve: bool = Field(description="true: promote the challenger to @champion; false: reject it")
    reviewer: str = Field(min_length=1, description="who decides (kept in the audit history)")
    reason: str = Field(min_length=1, description="why (kept in the audit history)")


@dataclass(frozen=True)
class ReviewOutcome:
    outcome: str               # approved | rejected | timed_out
    reviewer: str | None = None
    reason: str | None = None


def _back_to_running() -> None:
    """After a pause times out Prefect still holds the run as paused and would end it Failed;
    a timeout means "no decision", so the run carries on and completes."""
    from prefect import get_client
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(FlowRunContext.get().flow_run.id, Running(), force=True)


def await_review(model: str, version: str, timeout_seconds: int, poll_seconds: int) -> ReviewOutcome:
    logger = get_run_logger()
    client = MlflowClient()
    logger.info("%s v%s is @challenger. Waiting up to %d s for a reviewer: resume this flow run in the "
                "Prefect UI with approve, reviewer and reason.", model, version, timeout_seconds)
    try:
        answer = pause_flow_run(wait_for_input=ReviewDecision, timeout=timeout_seconds,
                                poll_interval=poll_seconds, key=f"review-{model}-v{version}")
    except FlowPauseTimeout:
        _back_to_running()
        client.set_model_version_tag(model, version, "review.outcome", "timed_out")
        logger.info("no reviewer answered within %d s: nothing changed", timeout_seconds)
        return ReviewOutcome("timed_out")
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for key, value in {"review.by": answer.reviewer, "review.reason": answer.reason, "review.at": at}.items():
        client.set_model_version_tag(model, version, key, value)
    if answer.approve:
        entry = promote(client, mlflow.get_tracking_uri(), model, answer.reviewer, answer.reason, version=version)
        client.set_model_version_tag(model, version, "review.outcome", "approved")
        logger.info("approved by %s: %s", answer.reviewer, entry.line())
        return ReviewOutcome("approved", answer.reviewer, answer.reason)
    client.set_model_version_tag(model, version, "review.outcome", "rejected")
    logger.info("rejected by %s: %s; @champion unchanged", answer.reviewer, answer.reason)
    return ReviewOutcome("rejected", answer.reviewer, answer.reason)
