"""The `specialize` flow: data -> validate -> train each strategy -> register -> publish."""
from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from pydantic import BaseModel, Field

from tasks.approval import await_review
from tasks.config import load_settings
from tasks.steps import (RunContext, lineage_tags, publish_comparison, publish_report, register_candidate,
                         resolve_base, train_and_evaluate, validate_data, version_data)
from tasks.tracking import configure, parent_run


class SpecializeInput(BaseModel):
    """The form a run takes (the Prefect UI renders it)."""

    params_file: str = Field("params.yaml", description="params file; its folder is the project root")
    profile: str | None = Field(None, description="a profile under `profiles:` in the params file, e.g. smoke")
    strategies: list[str] | None = Field(None, description="strategies to run; default: strategies.run; ['all'] for every one")
    await_approval: bool = Field(False, description="after proposing a challenger, pause for a reviewer's "
                                                    "approve/reject in the Prefect UI")


@dataclass(frozen=True)
class SpecializeOutput:
    parent_run_id: str
    data_version: str
    registered_version: str
    candidate: str
    challenger_set: bool
    table: str
    review: str          # approved | rejected | timed_out | not_asked
    report: str          # the HTML comparison report
    models: dict[str, str]   # strategy -> logged model URI (every strategy, registered or not)


@flow(name="specialize", log_prints=True)
def specialize(run: SpecializeInput = SpecializeInput()) -> SpecializeOutput:
    settings = load_settings(run.params_file, run.profile, run.strategies)
    data = version_data(settings)
    base = resolve_base(settings)
    experiment_id = configure(settings.root, settings.project.experiment)
    tags = lineage_tags(settings, data, base)
    with parent_run(experiment_id, f"specialize-{data.version[:8]}", tags) as parent_id:
        frames = validate_data(settings, data, parent_id)
        ctx = RunContext(settings, base, data, frames, experiment_id, parent_id, tags)
        results = [train_and_evaluate(name, ctx) for name in settings.strategies]
        registration = register_candidate(ctx, results)
        table = publish_comparison(results, registration, parent_id)
        report = publish_report(settings, parent_id)
    review = "not_asked"
    if run.await_approval and registration.decision.set_challenger:
        review = await_review(registration.model_name, registration.version,
                              settings.project.approval_timeout_seconds,
                              settings.project.approval_poll_seconds).outcome
    return SpecializeOutput(parent_id, data.version, registration.version, registration.strategy,
                            registration.decision.set_challenger, table, review, str(report),
                            {r.strategy: r.model_uri for r in results})
