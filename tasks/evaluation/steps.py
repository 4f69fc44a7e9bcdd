"""The evaluation stage's Prefect tasks: the comparison table (printed, a Prefect table
artifact, comparison.json on the parent run) and the HTML report (reports/, MLflow, a Prefect
link artifact)."""
from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.config import Settings
from tasks.errors import UserError
from tasks.evaluation.record import StrategyResult
from tasks.tasktypes import DEFAULT, lookup, task_type
from tasks.tasktypes.metrics import find, recorded
from tasks.tracking import log_json


def comparison_rows(results: list[StrategyResult], task: str = DEFAULT) -> list[dict[str, object]]:
    """One row per strategy: the metrics every run of the task type records (the catalogue's)."""
    names = recorded(task)
    return [{"strategy": r.strategy, **{m: r.metrics[m] for m in names}} for r in results]


def format_table(rows: list[dict[str, object]], task: str = DEFAULT) -> str:
    """The comparison as a text table: the task type's table columns, named and formatted by the
    metric catalogue (a key with a bootstrap interval shows it)."""
    keys = task_type(task).table
    head = ["strategy", *(_heading(k) for k in keys)]
    body = [[str(r["strategy"]), *(_value(r, k) for k in keys)] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])


def _heading(key: str) -> str:
    metric, split = lookup(key)
    return metric.label_for(split) + (" [95% CI]" if _has_ci(key) else "")


def _has_ci(key: str) -> bool:
    return find(f"{key}_ci_low") is not None


def _value(row: dict[str, object], key: str) -> str:
    text = lookup(key)[0].format(float(row[key]))
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    return text + (f" [{low:.3f}, {high:.3f}]" if _has_ci(key) and low is not None and high is not None else "")


@task(name="publish comparison", cache_policy=NO_CACHE)
def publish_comparison(results: list[StrategyResult], registered: str, parent_run_id: str,
                       task: str = DEFAULT) -> str:
    """`registered`: the registry's one-line outcome (which version, which strategy, @challenger or not)."""
    rows = comparison_rows(results, task)
    table = format_table(rows, task)
    summary = f"{table}\n\n{registered}"
    create_table_artifact(key="strategy-comparison", table=rows,
                          description=f"MLflow parent run {parent_run_id}; {summary.splitlines()[-1]}")
    log_json(parent_run_id, rows, "comparison.json")
    print(summary)
    return summary


def build_report(settings: Settings, parent_run_id: str) -> str:
    from mlflow.tracking import MlflowClient

    from tasks.evaluation.report import render
    from tasks.evaluation.report_data import collect

    data = collect(MlflowClient(), parent_run_id)
    # The run's own task decides the metric (a generation run rebuilt with the default params);
    # select_metric applies when it belongs to that task.
    p = settings.project
    select = p.selection_key(data.task) if p.select_metric == "auto" or data.task == settings.task else None
    return render(data, p.recommend_tolerance_points, p.budgets, select, settings.cost)


def cost_text(settings: Settings, parent_run_id: str) -> str:
    """`adaptflow cost`: the report's cost table and break-even points for a finished run, as
    text, for `settings.cost` (its strategies' logged figures; nothing is re-measured)."""
    from mlflow.tracking import MlflowClient

    from tasks.evaluation.cost_report import cost_table, format_cost
    from tasks.evaluation.report_data import collect

    data = collect(MlflowClient(), parent_run_id)
    table = cost_table(data.rows, settings.cost, data.quality[0])
    if not table.measured:
        left = "; ".join(table.left_out) or "it has no strategy runs"
        raise UserError(f"run {parent_run_id} logged no figures the cost model reads ({left}): runs from "
                        f"before the cost model, or failed ones, cannot be costed; run `adaptflow run` again")
    return (f"run {parent_run_id} ({data.title}, {data.task}): what each strategy costs to own "
            f"(docs/cost.md)\n\n{format_cost(table, data.quality[1], settings.project.budgets.get('max_monthly_cost'))}")


@task(name="report", cache_policy=NO_CACHE)
def publish_report(settings: Settings, parent_run_id: str) -> Path:
    """The HTML comparison report: written under reports/, logged to the parent run, linked
    from a Prefect artifact."""
    from mlflow.tracking import MlflowClient
    from prefect.artifacts import create_link_artifact

    out = settings.root / "reports" / f"{parent_run_id}.html"
    out.parent.mkdir(exist_ok=True)
    out.write_text(build_report(settings, parent_run_id))
    client = MlflowClient()
    client.log_artifact(parent_run_id, str(out))
    uri = f"{client.get_run(parent_run_id).info.artifact_uri}/{out.name}"
    create_link_artifact(key="comparison-report", link=out.resolve().as_uri(), link_text="comparison report (HTML)",
                         description=f"Also in MLflow: {uri}")
    get_run_logger().info("report: %s", out)
    return out


def report_or_warning(settings: Settings, parent_run_id: str) -> Path | None:
    """`publish_report`, except that a report which cannot be built does not fail the run: by then
    the run has logged every result and registered its version (seen: matplotlib refusing a log
    axis failed `adaptflow run` with exit code 1 after registering). The failure is a warning that
    names it and the command that rebuilds the report, and a `report.error` tag on the parent run;
    None then."""
    from mlflow.tracking import MlflowClient

    state = publish_report(settings, parent_run_id, return_state=True)
    if state.is_completed():
        return state.result()
    error = state.result(raise_on_failure=False)
    what = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(state.message)
    get_run_logger().warning("the comparison report could not be built (%s); the run's results and its registered "
                             "version are kept. Rebuild it with `adaptflow report %s --out report.html`",
                             what, parent_run_id)
    MlflowClient().set_tag(parent_run_id, "report.error", what[:500])
    return None
