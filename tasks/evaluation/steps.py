"""The evaluation stage's Prefect tasks: the comparison table (printed, a Prefect table
artifact, comparison.json on the parent run) and the HTML report (reports/, MLflow, a Prefect
link artifact)."""
from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.config import Settings
from tasks.evaluation.record import GENERATION_METRICS, METRICS, StrategyResult
from tasks.tracking import log_json


def comparison_rows(results: list[StrategyResult], task: str = "classification") -> list[dict[str, object]]:
    names = GENERATION_METRICS if task == "generation" else METRICS
    return [{"strategy": r.strategy, **{m: r.metrics[m] for m in names}} for r in results]


def format_table(rows: list[dict[str, object]]) -> str:
    if rows and "test_rougeL" in rows[0]:
        head = ["strategy", "ROUGE-L [95% CI]", "chrF", "exact", "trainable %", "artifact MB", "train s", "gen p50 ms"]
        body = [[str(r["strategy"]), f"{r['test_rougeL']:.4f} [{r['test_rougeL_ci_low']:.3f}, "
                 f"{r['test_rougeL_ci_high']:.3f}]", f"{r['test_chrf']:.4f}", f"{r['test_exact_match']:.3f}",
                 f"{100 * r['trainable_fraction']:.3f}", f"{r['artifact_bytes'] / 1e6:.3f}",
                 f"{r['train_seconds']:.1f}", f"{r['latency_ms_p50']:.0f}"] for r in rows]
    else:
        head = ["strategy", "accuracy", "macro_f1", "trainable", "trainable %", "artifact MB", "train s"]
        body = [[str(r["strategy"]), f"{r['test_accuracy']:.4f}", f"{r['test_macro_f1']:.4f}",
                 f"{int(r['trainable_params']):,}", f"{100 * r['trainable_fraction']:.3f}",
                 f"{r['artifact_bytes'] / 1e6:.3f}", f"{r['train_seconds']:.1f}"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])


@task(name="publish comparison", cache_policy=NO_CACHE)
def publish_comparison(results: list[StrategyResult], registered: str, parent_run_id: str,
                       task: str = "classification") -> str:
    """`registered`: the registry's one-line outcome (which version, which strategy, @challenger or not)."""
    rows = comparison_rows(results, task)
    table = format_table(rows)
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
    return render(data, p.recommend_tolerance_points, p.budgets, select)


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
