"""The `specialize` flow: check MLflow -> ingest -> validate raw -> split -> validate splits -> push ->
the retrieval index (when a strategy retrieves) -> train each strategy (apart: one failing does
not stop the others) -> register -> publish."""
from __future__ import annotations

from dataclasses import dataclass, field

from prefect import flow, get_run_logger

# DataInput: re-exported, so a flow's caller imports the form and its parts from here.
from flows.inputs import DataInput, SpecializeInput  # noqa: F401
from flows.server_side import confine_run, from_deployment, pipeline_account
from tasks.data.lock import data_steps_lock
from tasks.data.steps import ingest_data, push_data, split_data, validate_data, validate_raw_data
from tasks.evaluation.steps import publish_comparison, report_or_warning
from tasks.models.steps import resolve_base
from tasks.ops.failures import registrable
from tasks.ops.fanout import fork_server, train_strategies
from tasks.ops.tracking_check import check_tracking
from tasks.registry.approval import await_review
from tasks.registry.steps import register_candidate
from tasks.tracking import configure, lineage_tags, parent_run, run_tags, tag_run, tracking_uri
from tasks.training.hardware import check_hardware
from tasks.training.context import RunContext
from tasks.training.retrieval_step import build_retrieval_index, retrieval_embedders


@dataclass(frozen=True, kw_only=True)
class SpecializeOutput:
    parent_run_id: str
    data_version: str
    registered_version: str
    candidate: str
    challenger_set: bool
    table: str
    review: str          # approved | rejected | refused | timed_out | not_asked
    report: str          # the HTML comparison report
    models: dict[str, str]   # strategy -> logged model URI (every strategy, registered or not)
    failed: dict[str, str] = field(default_factory=dict)   # strategy -> error, for those that failed


@flow(name="specialize", log_prints=True)
def specialize(run: SpecializeInput = SpecializeInput()) -> SpecializeOutput:
    run = confine_run(run)   # a form's paths stay in the project (flows/server_side.py)
    settings = run.settings()
    hardware = check_hardware(settings.train)   # a wrong device fails here, before any data is read
    # The strategies' fork server imports torch and transformers while the checks and data steps run
    # (after check_hardware: a first run on a machine times a bf16 step there, on a quiet CPU).
    with fork_server(settings) as forks:
        check_tracking(tracking_uri(settings.root), settings.ops.tracking_check_seconds)   # seconds, not minutes
        base = resolve_base(settings.model.base, settings.root, settings.task)
        experiment_id = configure(settings.root, settings.project.experiment)
        tags = run_tags(settings, base)   # once, before the DVC stages rewrite tracked files
        get_run_logger().info("training on %s", hardware.reason)
        with parent_run(experiment_id, "specialize", tags) as parent_id:
            with data_steps_lock(settings.root, settings.ops.data_lock_timeout_seconds, f"specialize {parent_id[:8]}",
                                 get_run_logger().warning):   # one run at a time through a project's data
                raw = ingest_data(settings)
                settings = validate_raw_data(settings, raw, parent_id)   # gate 1; the label set in force
                data = split_data(settings, raw)
                frames = validate_data(settings, data, base, parent_id)   # gate 2: nothing trains past a failure
                push_data(settings, data)
            tags = lineage_tags(tags, data)
            tag_run(parent_id, {**tags, "mlflow.runName": f"specialize-{data.version[:8]}"})
            ctx = RunContext(settings=settings, base=base, data=data, frames=frames, experiment_id=experiment_id,
                             parent_run_id=parent_id, tags=tags)
            if retrieval_embedders(ctx):
                build_retrieval_index(ctx)   # once, from train only; each retrieval strategy reuses it
            trained = train_strategies(ctx, forks)
            results = registrable(trained.results)   # only runs whose artifacts are all in the store
            registration = register_candidate(ctx, results)
            table = publish_comparison(results, registration.summary(), parent_id, settings.task)
            report = report_or_warning(settings, parent_id)   # a report failure fails nothing above it
    review = "not_asked"
    if run.await_approval and registration.decision.set_challenger:
        review = await_review(registration.model_name, registration.version,
                              settings.project.approval_timeout_seconds,
                              settings.project.approval_poll_seconds,
                              pipeline_account=_pipeline_account(settings)).outcome
    return SpecializeOutput(parent_run_id=parent_id, data_version=data.version,
                            registered_version=registration.version, candidate=registration.strategy,
                            challenger_set=registration.decision.set_challenger, table=table, review=review,
                            report=str(report or ""), models={r.strategy: r.model_uri for r in trained.results},
                            failed=trained.failures)


def _pipeline_account(settings) -> str | None:
    """From a deployment, the serving process's (a form could name a params file without one);
    from the command line, the params file's."""
    return pipeline_account() if from_deployment() else settings.project.pipeline_account
