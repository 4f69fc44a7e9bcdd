"""The data stage's Prefect tasks: ingest (DVC), the raw-data gate, split (DVC), the split gate
with drift warnings, and the push to the DVC remote. Each is a thin step over the logic in
this package; every gate logs its result and Data Docs to the parent run, passed or failed."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.config import Settings
from tasks.data import dvc
from tasks.data.contract import DataValidationError, ValidationReport
from tasks.data.dvc import DataVersion, RawData
from tasks.data.splits import SPLITS
from tasks.models.base import ResolvedBase
from tasks.tracking import log_json, tag_run
from tasks.tasktypes import task_type


def dvc_remote(settings: Settings) -> Path | str:
    """data.dvc_remote: a URL (s3://bucket/prefix: MinIO or S3, infra/) as is; a path resolved
    against the project."""
    remote = settings.data.dvc_remote
    return remote if "://" in remote else settings.path(remote)


@task(name="data: ingest (dvc repro ingest)", cache_policy=NO_CACHE)
def ingest_data(settings: Settings) -> RawData:
    from tasks.data.source import resolve_source

    source_file = resolve_source(settings.data.source, settings.root)
    raw = dvc.reproduce_ingest(settings.root, settings.data, source_file, dvc_remote(settings), settings.feedback.folder)
    get_run_logger().info("ingested %s -> %s (md5 %s)", source_file, raw.raw_path, raw.md5[:8])
    return raw


@task(name="validate raw data (Great Expectations)", cache_policy=NO_CACHE)
def validate_raw_data(settings: Settings, raw: RawData, parent_run_id: str) -> Settings:
    """Gate 1, on the ingested file. Returns the settings with the label set in force: the
    declared one, or (none declared) the one found in the data, which is logged."""
    from tasks.config import with_labels
    from tasks.data.contract import RawContract, validate_raw
    from tasks.data.source import DELIMITERS, detect_format, read_table, separator_hint

    d = settings.data
    fmt = detect_format(raw.path, d.format)
    frame, problems = read_table(raw.path, fmt, d.delimiter, d.encoding, d.max_decompressed_mb)
    hint = separator_hint([str(c) for c in frame.columns], fmt, d.delimiter or DELIMITERS.get(fmt, ","))
    contract = RawContract(d, settings.validation)
    inputs = {"md5": raw.md5, "format": fmt, "contract": asdict(contract)}
    report = _gate(settings, parent_run_id, "raw", inputs,
                   lambda docs: validate_raw(frame, contract, fmt, problems, docs, hint))
    if not report.success:
        raise DataValidationError(report.message({"raw": f"{raw.raw_path} (from {raw.source_file})"}))
    logger = get_run_logger()
    _log_dropped(parent_run_id, frame, d, fmt)
    if report.labels_inferred:
        logger.info("labels inferred from the data (none declared in validation.labels): %s", report.labels)
        tag_run(parent_run_id, {"validation.labels_inferred": "true"})
    logger.info("raw data passed %d expectations (%d rows)", report.evaluated, len(frame))
    return with_labels(settings, report.labels)


def _log_dropped(parent_run_id: str, frame: pd.DataFrame, d, fmt: str) -> None:
    """Every row the prepare stage will drop (data.drop_*), counted by reason with its first
    rows, in the flow's log and as validation/dropped_rows.json: never silent."""
    from tasks.data.prepare import cleaned
    from tasks.data.source import line_of

    dropped = cleaned(frame, d)[1]
    logger = get_run_logger()
    for reason, rows in dropped.items():
        where = ", ".join(f"{line_of(fmt, i)}" + (f" {frame.loc[i, 'file']}" if "file" in frame.columns else "")
                          for i in rows[:5])
        logger.warning("dropping %d row(s): %s (as data.drop_* says), e.g. %s", len(rows), reason, where)
    log_json(parent_run_id, {reason: {"count": len(rows), "rows": rows} for reason, rows in dropped.items()},
             "validation/dropped_rows.json")


@task(name="data: split (dvc repro)", cache_policy=NO_CACHE)
def split_data(settings: Settings, raw: RawData) -> DataVersion:
    data = dvc.reproduce_splits(settings.root, settings.data, raw, dvc_remote(settings))
    get_run_logger().info("data version %s: %s", data.version,
                          ", ".join(f"{s}={h[:8]}" for s, h in data.split_hashes.items()))
    return data


def _gate(settings: Settings, parent_run_id: str, gate: str, inputs: dict, run) -> ValidationReport:
    """Run one gate with a Data Docs site in a temporary folder; log its result, its summary
    and its Data Docs (HTML) to the parent run, passed or failed. A gate that passed earlier with
    the same inputs (tasks/data/gate_reuse.py) is not run again: that run's evidence is copied."""
    import tempfile

    from tasks.data import gate_reuse

    key = gate_reuse.gate_key(gate, settings.root, inputs)
    earlier = gate_reuse.passed_earlier(parent_run_id, gate, key) if settings.ops.reuse_passed_gates else None
    report = gate_reuse.reuse(earlier, parent_run_id, gate) if earlier else None
    if report is not None:
        tag_run(parent_run_id, {gate_reuse.key_tag(gate): key, gate_reuse.reused_tag(gate): earlier})
        get_run_logger().info("the %s gate passed on the same data under the same contract in run %s: its results "
                              "and Data Docs are copied, not computed again (ops.reuse_passed_gates)",
                              {"raw": "raw-data"}.get(gate, "split"), earlier)
        return report
    with tempfile.TemporaryDirectory() as tmp:
        report = run(Path(tmp) / "docs")
        log_json(parent_run_id, report.summary(), f"validation/{report.gate}/summary.json")
        log_json(parent_run_id, report.results, f"validation/{report.gate}/great_expectations_results.json")
        if report.docs_dir is not None and report.docs_dir.is_dir():
            _log_docs(parent_run_id, report.docs_dir, f"validation/{report.gate}/data_docs")
    if not report.success:
        log_json(parent_run_id, report.summary(), "validation/summary.json")
        tag_run(parent_run_id, {"validation": "failed", "validation.gate": report.gate})
    else:
        tag_run(parent_run_id, {gate_reuse.key_tag(gate): key})
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


def _token_counter(base: ResolvedBase, settings: Settings):
    """Tokens per text in the base's tokenizer (tasks/models/token_count.py); generation: (prompt
    + target, target) tokens per example, the prompt built as training builds it."""
    if task_type(settings.task).generates:   # counted as training builds it: the chat prompt + target
        from tasks.models.loading import load_tokenizer
        from tasks.models.prompts import PromptFormat, token_lengths

        tokenizer = load_tokenizer(base.path)
        fmt = PromptFormat(settings.generation.system_prompt, settings.generation.instruction)
        return lambda texts, targets: token_lengths(tokenizer, fmt, texts, targets)
    from tasks.models.token_count import token_counter

    return token_counter(base.path, base.fingerprint)


def previous_profile(parent_run_id: str, source: str, version: str):
    """The profile logged by the latest validated run of the same data.source whose data
    version differs from this one (None when there is none)."""
    from mlflow.tracking import MlflowClient

    from tasks.data.drift import DataProfile

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
def validate_data(settings: Settings, data: DataVersion, base: ResolvedBase, parent_run_id: str
                  ) -> dict[str, pd.DataFrame]:
    """Gate 2, the hard gate before training: returns the splits only if every expectation
    holds. Drift against the previous validated version is logged as warnings."""
    from tasks.data.contract import SplitContract, validate_splits
    from tasks.data.drift import drift, profile

    frames = {s: pd.read_parquet(data.split_files[s]) for s in SPLITS}
    v = settings.validation
    contract = SplitContract.from_settings(settings)
    inputs = {"md5": data.split_hashes, "contract": asdict(contract), "base": base.fingerprint,
              "task": settings.task, "prompt": asdict(settings.generation)}   # generation counts prompt tokens
    report = _gate(settings, parent_run_id, "splits", inputs,
                   lambda docs: validate_splits(frames, contract, _token_counter(base, settings), docs))
    if not report.success:
        raise DataValidationError(report.message(data.split_files))
    logger = get_run_logger()
    for w in report.warnings:
        logger.warning("data: %s", w)
    current = profile(frames, data.version)
    previous = previous_profile(parent_run_id, data.source, data.version)
    warnings = drift(previous, current, v.drift_max_label_tvd, v.drift_max_length_psi) if previous else []
    for w in warnings:
        logger.warning("data drift: %s", w.message)
    log_json(parent_run_id, current.to_dict(), "validation/profile.json")
    log_json(parent_run_id, {"success": True, "evaluated_expectations": report.evaluated,
                             "labels": report.labels, "failures": [],
                             "warnings": report.warnings,
                             "drift_compared_with": previous.version if previous else None,
                             "drift_warnings": [w.__dict__ for w in warnings]}, "validation/summary.json")
    tag_run(parent_run_id, {"validation": "passed", "validation.drift_warnings": str(len(warnings))})
    if data.feedback_md5:
        _feedback_lineage(settings, parent_run_id, data)
    logger.info("validation passed: %d expectations on %s", report.evaluated,
                ", ".join(f"{s} ({len(f)} rows)" for s, f in frames.items()))
    return frames


def _feedback_lineage(settings: Settings, parent_run_id: str, data: DataVersion) -> None:
    """What the feedback table merged into this version holds (fold-feedback's summary: rows,
    conflicts, quarantined, excluded test inputs, the time window, the versions that answered), as
    validation/feedback.json and data.feedback_* tags on the run."""
    from tasks.data.feedback import SUMMARY_FILE

    path = settings.path(settings.feedback.folder) / SUMMARY_FILE
    summary = json.loads(path.read_text()) if path.is_file() else {}
    log_json(parent_run_id, {"feedback_md5": data.feedback_md5, **summary}, "validation/feedback.json")
    counts, window = summary.get("counts", {}), summary.get("feedback_at", {})
    tag_run(parent_run_id, {"data.feedback_rows": str(counts.get("rows", "?")),
                            "data.feedback_quarantined": str(counts.get("quarantined", "?")),
                            "data.feedback_window": f"{window.get('first')}..{window.get('last')}",
                            "data.feedback_versions": ",".join(summary.get("versions", []))})
    get_run_logger().info("data version %s includes feedback %s: %s rows", data.version, data.feedback_md5[:8],
                          counts.get("rows", "?"))


@task(name="data: dvc push", cache_policy=NO_CACHE)
def push_data(settings: Settings, data: DataVersion) -> None:
    """Before any training: a version whose data is not in the remote is never registered."""
    dvc.push(settings.root)
    get_run_logger().info("data version %s pushed to %s", data.version, data.remote)
