"""The Prefect tasks the flows are made of. Each is a thin, coarse step over plain logic
modules, so the logic is testable without Prefect and the flow reads like a table of contents."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.base_model import BaseModel, load_base
from tasks.config import Settings
from tasks.data import SPLITS
from tasks.data_version import DataVersion, git_state, reproduce_and_push
from tasks.encoding import subset_indices
from tasks.model_registry import Registration, TestSet, register_best
from tasks.run_strategy import METRICS, StrategyResult, run_strategy
from tasks.tracking import log_json
from tasks.validation import DataValidationError, validate_splits


@dataclass(frozen=True)
class RunContext:
    """What every strategy run shares: the base, the data, where to log, the common tags."""

    settings: Settings
    base: BaseModel
    data: DataVersion
    frames: dict[str, pd.DataFrame]
    experiment_id: str
    parent_run_id: str
    tags: dict[str, str]


@task(name="data: dvc repro + push", cache_policy=NO_CACHE)
def version_data(settings: Settings) -> DataVersion:
    data = reproduce_and_push(settings.root, settings.data.processed_dir, settings.data.raw_path,
                              settings.path(settings.data.dvc_remote))
    get_run_logger().info("data version %s: %s (pushed to %s)", data.version,
                          ", ".join(f"{s}={h[:8]}" for s, h in data.split_hashes.items()), data.remote)
    return data


def lineage_tags(settings: Settings, data: DataVersion, base: BaseModel) -> dict[str, str]:
    commit, dirty = git_state(settings.root)
    return {"data.version": data.version, "data.raw_md5": data.raw_hash,
            "data.raw_path": settings.data.raw_path, "data.remote": data.remote,
            **{f"data.{s}_md5": h for s, h in data.split_hashes.items()},
            "git.commit": commit, "git.dirty": str(dirty).lower(),
            "params.hash": settings.params_hash(), "profile": settings.profile or "default",
            "base.name": base.name, "base.fingerprint": base.fingerprint}


@task(name="load base model", cache_policy=NO_CACHE)
def resolve_base(settings: Settings) -> BaseModel:
    return load_base(settings.model.base, settings.root)


@task(name="validate (Great Expectations)", cache_policy=NO_CACHE)
def validate_data(settings: Settings, data: DataVersion, parent_run_id: str) -> dict[str, pd.DataFrame]:
    """The hard gate: returns the splits only if every expectation holds."""
    frames = {s: pd.read_parquet(data.split_files[s]) for s in SPLITS}
    v = settings.validation
    report = validate_splits(frames, v.labels, v.text_min_chars, v.text_max_chars, v.example_rows)
    log_json(parent_run_id, report.summary(), "validation/summary.json")
    log_json(parent_run_id, report.per_split, "validation/great_expectations_results.json")
    if not report.success:
        raise DataValidationError(report.message(data.split_files))
    get_run_logger().info("validation passed: %d expectations on %s", report.evaluated,
                          ", ".join(f"{s} ({len(f)} rows)" for s, f in frames.items()))
    return frames


@task(name="train + evaluate", task_run_name="strategy: {name}", cache_policy=NO_CACHE)
def train_and_evaluate(name: str, ctx: RunContext) -> StrategyResult:
    result = run_strategy(name, ctx.settings, ctx.base, ctx.frames, ctx.data, ctx.experiment_id,
                          ctx.parent_run_id, ctx.tags)
    get_run_logger().info("%s: test_accuracy=%.4f test_macro_f1=%.4f", name,
                          result.metrics["test_accuracy"], result.metrics["test_macro_f1"])
    return result


@task(name="register candidate", cache_policy=NO_CACHE)
def register_candidate(ctx: RunContext, results: list[StrategyResult]) -> Registration:
    p, labels = ctx.settings.project, ctx.settings.validation.labels
    frame = ctx.frames["test"]
    keep = subset_indices(len(frame), ctx.settings.train.max_eval_examples, ctx.settings.train.seed)
    test = TestSet(ctx.data.split_hashes["test"], frame["text"].iloc[keep].tolist(),
                   frame["label"].iloc[keep].map({n: i for i, n in enumerate(labels)}).to_numpy(), labels)
    reg = register_best(p.registered_model, p.select_metric, p.min_improvement, p.budgets, results,
                        {**ctx.tags, "validation": "passed", "parent_run_id": ctx.parent_run_id}, test)
    log_json(ctx.parent_run_id, {"version": reg.version, "strategy": reg.strategy,
                                 "set_challenger": reg.decision.set_challenger,
                                 "reasons": reg.decision.reasons}, "registry/decision.json")
    logger = get_run_logger()
    logger.info("registered %s v%s (%s, %s=%.4f)", reg.model_name, reg.version, reg.strategy,
                reg.metric_name, reg.metric)
    for reason in reg.decision.reasons:
        logger.info("@challenger: %s", reason)
    return reg


def comparison_rows(results: list[StrategyResult]) -> list[dict[str, object]]:
    return [{"strategy": r.strategy, **{m: r.metrics[m] for m in METRICS}} for r in results]


def format_table(rows: list[dict[str, object]]) -> str:
    head = ["strategy", "accuracy", "macro_f1", "trainable", "trainable %", "artifact MB", "train s"]
    body = [[str(r["strategy"]), f"{r['test_accuracy']:.4f}", f"{r['test_macro_f1']:.4f}",
             f"{int(r['trainable_params']):,}", f"{100 * r['trainable_fraction']:.3f}",
             f"{r['artifact_bytes'] / 1e6:.3f}", f"{r['train_seconds']:.1f}"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])


@task(name="publish comparison", cache_policy=NO_CACHE)
def publish_comparison(results: list[StrategyResult], reg: Registration, parent_run_id: str) -> str:
    rows = comparison_rows(results)
    table = format_table(rows)
    alias = "@challenger set" if reg.decision.set_challenger else "@challenger unchanged"
    summary = f"{table}\n\nregistered {reg.model_name} v{reg.version} ({reg.strategy}); {alias}"
    create_table_artifact(key="strategy-comparison", table=rows,
                          description=f"MLflow parent run {parent_run_id}; {summary.splitlines()[-1]}")
    log_json(parent_run_id, rows, "comparison.json")
    print(summary)
    return summary


def build_report(settings: Settings, parent_run_id: str) -> str:
    from mlflow.tracking import MlflowClient

    from tasks.report import collect, render

    b = settings.project.budgets
    return render(collect(MlflowClient(), parent_run_id), settings.project.recommend_tolerance_points,
                  b.get("max_ece"), b.get("max_artifact_bytes"))


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
