"""Should a scheduled retrain run? A pure decision over what went into the last successful run
and what would go into this one: the data (DVC md5 of the ingested source; with the params it
fixes the splits; with the md5 of the feedback table fold-feedback wrote, a new feedback version
is a changed source), the code (a hash of the Python under tasks/ and flows/ plus dvc.yaml, so
committing dvc.lock alone is no change; the git commit is shown), and the params hash."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Inputs:
    data: str          # data.raw_md5
    code: str          # code.version
    params: str        # params.hash
    commit: str = ""   # git.commit, for the message only
    feedback: str = ""  # data.feedback_md5: the feedback table merged into train/validation ("" none)


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str


def decide(current: Inputs, last: Inputs | None, last_run_id: str | None = None) -> RetrainDecision:
    if last is None:
        return RetrainDecision(True, "no successful run yet")
    changed = [f"{what} {old[:8] or '(unrecorded)'} -> {new[:8]}"
               for what, old, new in (("data", last.data, current.data), ("code", last.code, current.code),
                                      ("params", last.params, current.params),
                                      ("feedback", last.feedback, current.feedback)) if old != new]
    if changed:
        return RetrainDecision(True, "changed since the last successful run: " + "; ".join(changed))
    return RetrainDecision(False, f"skipped: data {current.data[:8]}, code {current.code[:8]} (commit "
                                  f"{current.commit[:8] or 'unknown'}) and params {current.params[:8]} are those of "
                                  f"the last successful run {last_run_id or ''}".rstrip())


def last_successful(client, experiment_id: str) -> tuple[Inputs, str] | None:
    """The inputs of the latest FINISHED specialize parent run that passed validation."""
    runs = client.search_runs([experiment_id], "attributes.status = 'FINISHED' and tags.validation = 'passed'",
                              order_by=["attributes.start_time DESC"], max_results=20)
    for run in runs:
        tags = run.data.tags
        if "mlflow.parentRunId" in tags:
            continue
        return Inputs(data=tags.get("data.raw_md5", ""), code=tags.get("code.version", ""),
                      params=tags.get("params.hash", ""), commit=tags.get("git.commit", ""),
                      feedback=tags.get("data.feedback_md5", "")), run.info.run_id
    return None
