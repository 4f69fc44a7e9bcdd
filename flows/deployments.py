"""The Prefect deployments, declared once, and `adaptflow deploy`, which registers them with the
server in PREFECT_API_URL and serves them from this process (a process worker of its own:
flow runs execute in child processes of it).

  specialize  on demand; the UI's form is the flow's typed input (SpecializeInput)
  retrain     ops.retrain_cron (weekly by default); skips when nothing changed; never promotes
  promote     on demand, reviewers; concurrency 1 (every move is also serialized by the audit claim)
  rollback    on demand, reviewers; concurrency 1
  canary-start, canary-stop   on demand, reviewers; concurrency 1 (docs/releasing.md)
  review-create  on demand, reviewers: a blinded side-by-side review session (docs/reviewing.md)
  canary-check   canary.check_cron (every 5 minutes by default): the pipeline judges the running
                 canary and rolls it back when it does worse; concurrency 1
  fold-feedback  on demand (or before retrain): accepted feedback becomes the DVC-tracked feedback
                 table the next data version merges (docs/feedback.md); concurrency 1
  drift-check    drift.check_cron (hourly by default): live inputs against the validation split and
                 the champion's feedback quality; drift (with drift.retrain on) or quality under
                 feedback.retrain_below_quality starts retrain with the finding; concurrency 1

What a form may not choose (the pipeline's account, the project folder its paths must stay in) is
pinned in this process's environment from the params file it was started with, and inherited by
the flow runs it serves (flows/server_side.py); a work pool's workers need the same variables.

Reviewer deployments refuse to run under the pipeline's MLflow account (project.pipeline_account),
so serve them from a process holding a reviewer service account (`--only promote,rollback,canary-start,
canary-stop`) and the pipeline's from another (`--only specialize,retrain,canary-check`); see infra/README.md.
"""
from __future__ import annotations

from pathlib import Path

NAMES = ("specialize", "retrain", "promote", "rollback", "canary-start", "canary-stop", "canary-check",
         "review-create", "fold-feedback", "drift-check")


def deployments(params_file: str, profile: str | None = None, only: list[str] | None = None) -> list:
    from prefect.schedules import Cron

    from flows import canary, human_review, review
    from flows.drift import drift_check
    from flows.feedback import fold_feedback
    from flows.retrain import retrain
    from flows.specialize import specialize
    from tasks.config import load_settings

    params = str(Path(params_file).resolve())   # runs execute in other processes: no relative paths
    loaded = load_settings(params, profile)
    ops = loaded.ops
    form = {"params_file": params, "profile": profile}
    reviewers = {"request": {"params_file": params}}   # a reviewer's action names no profile
    every = lambda cron: Cron(cron, timezone=ops.retrain_timezone)
    built = {
        "specialize": lambda: _deployment(
            specialize, "specialize", {"run": form}, ["adaptflow"],
            "Validate the data, train and compare the strategies, register the best (proposes @challenger; never "
            "promotes)."),
        "retrain": lambda: _deployment(
            retrain, "retrain", {"run": form}, ["adaptflow", "scheduled"],
            f"Scheduled retraining ({ops.retrain_cron} {ops.retrain_timezone}): refresh the data with DVC; skip "
            f"when data, code and params are unchanged; else specialize.",
            schedule=every(ops.retrain_cron), concurrency_limit=1),
        "promote": lambda: _deployment(review.promote, "promote", reviewers, ["adaptflow", "reviewers"],
                                       "Move @champion to a version (reviewers); audited.", concurrency_limit=1),
        "rollback": lambda: _deployment(review.rollback, "rollback", reviewers, ["adaptflow", "reviewers"],
                                        "Move @champion back to the previous champion (reviewers); audited.",
                                        concurrency_limit=1),
        "canary-start": lambda: _deployment(
            canary.canary_start, "canary-start", reviewers, ["adaptflow", "reviewers"],
            "Route a share of the unpinned traffic to a version (reviewers); audited.", concurrency_limit=1),
        "canary-stop": lambda: _deployment(
            canary.canary_stop, "canary-stop", reviewers, ["adaptflow", "reviewers"],
            "Send all unpinned traffic back to @champion (reviewers); audited.", concurrency_limit=1),
        "canary-check": lambda: _deployment(
            canary.canary_check, "canary-check", {"request": form}, ["adaptflow", "scheduled"],
            f"Judge the running canary ({loaded.canary.check_cron}): roll back when it does worse than @champion "
            "on the live signals, else hold or mark it ready for review.",
            schedule=every(loaded.canary.check_cron), concurrency_limit=1),
        "review-create": lambda: _deployment(
            human_review.review_create, "review-create", {"request": form}, ["adaptflow", "reviewers"],
            "Build a blinded side-by-side review session of two versions (reviewers judge at "
            "`adaptflow review serve SESSION`)."),
        "fold-feedback": lambda: _deployment(
            fold_feedback, "fold-feedback", {"request": form}, ["adaptflow"],
            "Turn accepted user feedback into the DVC-tracked feedback table: conflicts by majority (ties "
            "dropped), test-split inputs excluded, contract refusals quarantined.", concurrency_limit=1),
        "drift-check": lambda: _deployment(
            drift_check, "drift-check", {"request": form}, ["adaptflow", "scheduled"],
            f"Check live inputs for drift and the champion's feedback quality ({loaded.drift.check_cron}); drift "
            "(with drift.retrain) or quality under feedback.retrain_below_quality starts retrain with the finding "
            "as its trigger.", schedule=every(loaded.drift.check_cron), concurrency_limit=1),
    }
    return [built[name]() for name in (only or NAMES)]


def _deployment(flow, name: str, parameters: dict, tags: list[str], description: str, **more):
    """`flow` as a deployment whose entrypoint is its module path (flows.specialize.specialize:
    importable wherever adaptflow is installed)."""
    from prefect.types.entrypoint import EntrypointType

    return flow.to_deployment(name, parameters=parameters, entrypoint_type=EntrypointType.MODULE_PATH, tags=tags,
                              description=description, **more)


def serve_deployments(params_file: str, profile: str | None = None, only: list[str] | None = None,
                      limit: int | None = None) -> None:
    """Register the deployments and execute their runs until interrupted (Ctrl-C, SIGTERM)."""
    from prefect import serve

    from flows.server_side import pin

    pin(params_file, profile)   # before any run starts: they inherit this environment
    serve(*deployments(params_file, profile, only), limit=limit)


def register_for_pool(params_file: str, work_pool: str, image: str | None, profile: str | None = None,
                      only: list[str] | None = None) -> list:
    """Register the deployments for `work_pool`'s workers; returns their ids. The image (a job
    variable of container pools) is built and pushed elsewhere (infra/README.md); a process pool
    runs the installed package. `RunnerDeployment.apply` rather than `prefect.deploy`: the latter
    insists on building an image or on remote code storage, and adaptflow's entrypoints are
    module paths that every worker's environment already has."""
    return [d.apply(work_pool_name=work_pool, image=image) for d in deployments(params_file, profile, only)]
