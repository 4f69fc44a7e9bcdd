"""The Prefect tasks the flows are made of. Each is a thin, coarse step over plain logic
modules, so the logic is testable without Prefect and the flow reads like a table of contents."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks import data_version
from tasks.base_model import BaseModel, load_base
from tasks.config import Settings
from tasks.data import SPLITS
from tasks.data_version import DataVersion, RawData, git_state
from tasks.encoding import subset_indices
from tasks.model_registry import Registration, TestSet, register_best
from tasks.run_strategy import METRICS, StrategyResult, run_strategy
from tasks.tracking import log_json
from tasks.validation import DataValidationError, ValidationReport


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


def run_tags(settings: Settings, base: BaseModel) -> dict[str, str]:
    """What is known before the data is read: code, params, base, and which dataset."""
    from tasks.ops.retrain import code_version

    commit, dirty = git_state(settings.root)
    return {"data.source": settings.data.source, "data.raw_path": settings.data.raw_path,
            "git.commit": commit, "git.dirty": str(dirty).lower(), "code.version": code_version(settings.root),
            "params.hash": settings.params_hash(), "profile": settings.profile or "default",
            "base.name": base.name, "base.fingerprint": base.fingerprint}


def lineage_tags(settings: Settings, data: DataVersion, base: BaseModel) -> dict[str, str]:
    return {**run_tags(settings, base), "data.version": data.version, "data.raw_md5": data.raw_hash,
            "data.remote": data.remote, **{f"data.{s}_md5": h for s, h in data.split_hashes.items()}}


def tag_run(run_id: str, tags: dict[str, str]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def dvc_remote(settings: Settings) -> Path | str:
    """data.dvc_remote: a URL (s3://bucket/prefix: MinIO or S3, infra/) as is; a path resolved
    against the project."""
    remote = settings.data.dvc_remote
    return remote if "://" in remote else settings.path(remote)


@task(name="data: ingest (dvc repro ingest)", cache_policy=NO_CACHE)
def ingest_data(settings: Settings) -> RawData:
    from tasks.data_source import resolve_source

    source_file = resolve_source(settings.data.source, settings.root)
    raw = data_version.ingest(settings.root, settings.data, source_file, dvc_remote(settings))
    get_run_logger().info("ingested %s -> %s (md5 %s)", source_file, raw.raw_path, raw.md5[:8])
    return raw


@task(name="validate raw data (Great Expectations)", cache_policy=NO_CACHE)
def validate_raw_data(settings: Settings, raw: RawData, parent_run_id: str) -> Settings:
    """Gate 1, on the ingested file. Returns the settings with the label set in force: the
    declared one, or (none declared) the one found in the data, which is logged."""
    from tasks.config import with_labels
    from tasks.data_source import DELIMITERS, detect_format, read_table, separator_hint
    from tasks.validation import RawContract, validate_raw

    d, v = settings.data, settings.validation
    fmt = detect_format(raw.path, d.format)
    frame, problems = read_table(raw.path, fmt, d.delimiter, d.encoding)
    hint = separator_hint([str(c) for c in frame.columns], fmt, d.delimiter or DELIMITERS.get(fmt, ","))
    contract = RawContract(d.text_col, d.label_col, list(v.labels), d.split_col, d.group_col, dict(d.label_map),
                           list(d.drop_labels), d.drop_empty_texts, v.text_min_chars, v.text_max_chars,
                           v.max_classes, v.example_rows)
    report = _gate(parent_run_id, lambda docs: validate_raw(frame, contract, fmt, problems, docs, hint))
    if not report.success:
        raise DataValidationError(report.message({"raw": f"{raw.raw_path} (from {raw.source_file})"}))
    logger = get_run_logger()
    if report.labels_inferred:
        logger.info("labels inferred from the data (none declared in validation.labels): %s", report.labels)
        tag_run(parent_run_id, {"validation.labels_inferred": "true"})
    logger.info("raw data passed %d expectations (%d rows)", report.evaluated, len(frame))
    return with_labels(settings, report.labels)


@task(name="data: split (dvc repro)", cache_policy=NO_CACHE)
def split_data(settings: Settings, raw: RawData) -> DataVersion:
    data = data_version.split(settings.root, settings.data, raw, dvc_remote(settings))
    get_run_logger().info("data version %s: %s", data.version,
                          ", ".join(f"{s}={h[:8]}" for s, h in data.split_hashes.items()))
    return data


def _gate(parent_run_id: str, run) -> ValidationReport:
    """Run one gate with a Data Docs site in a temporary folder; log its result, its summary
    and its Data Docs (HTML) to the parent run, passed or failed."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = run(Path(tmp) / "docs")
        log_json(parent_run_id, report.summary(), f"validation/{report.gate}/summary.json")
        log_json(parent_run_id, report.results, f"validation/{report.gate}/great_expectations_results.json")
        if report.docs_dir is not None and report.docs_dir.is_dir():
            _log_docs(parent_run_id, report.docs_dir, f"validation/{report.gate}/data_docs")
    if not report.success:
        log_json(parent_run_id, report.summary(), "validation/summary.json")
        tag_run(parent_run_id, {"validation": "failed", "validation.gate": report.gate})
    return report


def _log_docs(run_id: str, docs: Path, where: str) -> None:
    """The Data Docs pages and their stylesheet; not the 4 MB of fonts and images."""
    import shutil
    import tempfile

    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        keep = Path(tmp) / "docs"
        shutil.copytree(docs, keep, ignore=lambda d, names: [n for n in names if n in ("fonts", "images")])
        MlflowClient().log_artifacts(run_id, str(keep), where)


def _token_counter(base: BaseModel):
    from transformers.utils import logging as hf_logging

    from tasks.base_model import load_tokenizer

    tokenizer = load_tokenizer(base.path)
    hf_logging.set_verbosity_error()   # "sequence longer than the maximum": counting is the point

    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]] if texts else []
    return count


def previous_profile(parent_run_id: str, source: str, version: str):
    """The profile logged by the latest validated run of the same data.source whose data
    version differs from this one (None when there is none)."""
    from mlflow.tracking import MlflowClient

    from tasks.drift import DataProfile

    client = MlflowClient()
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    quoted = source.replace("'", "\\'")
    runs = client.search_runs([experiment_id], f"tags.`data.source` = '{quoted}' and tags.validation = 'passed'",
                              order_by=["attributes.start_time DESC"], max_results=50)
    for run in runs:
        if run.info.run_id != parent_run_id and run.data.tags.get("data.version") != version:
            try:
                path = client.download_artifacts(run.info.run_id, "validation/profile.json")
            except Exception:   # an older run without a profile: look further back
                continue
            return DataProfile(**json.loads(Path(path).read_text()))
    return None


@task(name="validate splits (Great Expectations)", cache_policy=NO_CACHE)
def validate_data(settings: Settings, data: DataVersion, base: BaseModel, parent_run_id: str
                  ) -> dict[str, pd.DataFrame]:
    """Gate 2, the hard gate before training: returns the splits only if every expectation
    holds. Drift against the previous validated version is logged as warnings."""
    from tasks.drift import drift, profile
    from tasks.validation import SplitContract, validate_splits

    frames = {s: pd.read_parquet(data.split_files[s]) for s in SPLITS}
    v = settings.validation
    contract = SplitContract(list(v.labels), settings.data.group_col, v.text_min_chars, v.text_max_chars,
                             v.text_max_tokens, settings.model.max_length, v.max_share_over_max_length,
                             v.min_examples_per_label, v.max_class_share, v.example_rows)
    count = _token_counter(base)
    report = _gate(parent_run_id, lambda docs: validate_splits(frames, contract, count, docs))
    if not report.success:
        raise DataValidationError(report.message(data.split_files))
    logger = get_run_logger()
    current = profile(frames, data.version)
    previous = previous_profile(parent_run_id, data.source, data.version)
    warnings = drift(previous, current, v.drift_max_label_tvd, v.drift_max_length_psi) if previous else []
    for w in warnings:
        logger.warning("data drift: %s", w.message)
    log_json(parent_run_id, current.to_dict(), "validation/profile.json")
    log_json(parent_run_id, {"success": True, "evaluated_expectations": report.evaluated,
                             "labels": report.labels, "failures": [],
                             "drift_compared_with": previous.version if previous else None,
                             "drift_warnings": [w.__dict__ for w in warnings]}, "validation/summary.json")
    tag_run(parent_run_id, {"validation": "passed", "validation.drift_warnings": str(len(warnings))})
    logger.info("validation passed: %d expectations on %s", report.evaluated,
                ", ".join(f"{s} ({len(f)} rows)" for s, f in frames.items()))
    return frames


@task(name="data: dvc push", cache_policy=NO_CACHE)
def push_data(settings: Settings, data: DataVersion) -> None:
    """Before any training: a version whose data is not in the remote is never registered."""
    data_version.push(settings.root)
    get_run_logger().info("data version %s pushed to %s", data.version, data.remote)


@task(name="load base model", cache_policy=NO_CACHE)
def resolve_base(settings: Settings) -> BaseModel:
    return load_base(settings.model.base, settings.root)


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

    return render(collect(MlflowClient(), parent_run_id), settings.project.recommend_tolerance_points,
                  settings.project.budgets)


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
