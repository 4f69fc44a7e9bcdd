"""The `fold-feedback` flow (the deployment of the same name, and `adaptflow feedback fold`):
accepted feedback in the outcome store becomes the feedback table under feedback.folder, tracked
by DVC; the next `retrain` sees a changed data version and runs the whole comparison again.

  read the model's feedback -> replay the poisoning rules -> fold (conflicts, test inputs,
  the contract's quarantine) -> write the table, the quarantine and the counts -> dvc add
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger

from flows.inputs import FoldFeedbackInput
from tasks.errors import UserError


class FoldError(FileNotFoundError, UserError):
    """Feedback cannot be folded yet; the message says what to run first."""


@dataclass(frozen=True)
class FoldOutput:
    table: str                # the feedback table (relative to the project)
    counts: dict              # votes, refused by the rules, conflicts, excluded test inputs, quarantined, rows
    window: tuple[float, float]


@flow(name="fold-feedback", log_prints=True)
def fold_feedback(request: FoldFeedbackInput = FoldFeedbackInput()) -> FoldOutput:
    from flows import server_side
    from tasks.config import load_settings
    from tasks.data.feedback_fold import fold

    settings = load_settings(server_side.confine_params(request.params_file), request.profile)
    model = request.model or settings.project.registered_model
    until = time.time()
    since = until - request.since_hours * 3600 if request.since_hours else 0.0
    votes, screened = _votes(settings, model, since, until)
    test = pd.read_parquet(_test_split(settings))
    folded = fold(votes, test["text"], _labels(settings, test), settings.validation, "label" in test.columns)
    counts = {**screened, **folded.counts}
    where = _write(settings, folded, counts, model, (since, until), votes)
    get_run_logger().info("fold-feedback %s: %s -> %s", model, ", ".join(f"{k}={v}" for k, v in counts.items()), where)
    return FoldOutput(where, counts, (since, until))


def _votes(settings, model: str, since: float, until: float) -> tuple[pd.DataFrame, dict[str, int]]:
    """One row per accepted vote (text, answer, request_id, version, at) and what the rules refused
    on this second look; rating-only feedback on generation is a quality signal, not data."""
    from tasks.config.stores import database_url
    from tasks.outcomes.feedback import feedback_rows, replay
    from tasks.outcomes.store import OutcomeStore

    store = OutcomeStore(database_url("outcomes.store", settings.outcomes.store, settings.root))
    try:
        rows = feedback_rows(store, model, since, until)
    finally:
        store.dispose()
    accepted, refused = replay(rows, settings.feedback)
    for row, why in refused:
        get_run_logger().warning("feedback on request %s refused on replay: %s", row.request_id, why)
    answers = [(r, r.label if r.label is not None else r.output) for r in accepted]
    frame = pd.DataFrame([{"text": r.input, "answer": a, "request_id": r.request_id, "version": r.version, "at": r.at}
                          for r, a in answers if a is not None], columns=["text", "answer", "request_id", "version", "at"])
    return frame, {"stored": len(rows), "refused_on_replay": len(refused),
                   "ratings_only": sum(a is None for _, a in answers)}


def _test_split(settings) -> Path:
    path = settings.path(settings.data.processed_dir) / "test.parquet"
    if not path.is_file():
        raise FoldError(f"{path} not found: fold-feedback keeps feedback out of the test split, so the data "
                                "must have been prepared once (`adaptflow run`) before feedback is folded")
    return path


def _labels(settings, test: pd.DataFrame) -> list[str]:
    """The declared label set, else the labels the prepared splits hold."""
    if settings.validation.labels:
        return list(settings.validation.labels)
    if "label" not in test.columns:
        return []
    folder = settings.path(settings.data.processed_dir)
    return sorted(set().union(*(set(pd.read_parquet(folder / f"{s}.parquet")["label"].astype(str))
                                for s in ("train", "validation", "test"))))


def _write(settings, folded, counts: dict, model: str, window: tuple[float, float], votes: pd.DataFrame) -> str:
    """The table (DVC-tracked), the quarantine (rows and reasons) and the counts, each written whole."""
    from tasks.data.dvc import dvc
    from tasks.data.feedback import FEEDBACK_FILE, QUARANTINE_FILE, SUMMARY_FILE

    folder = settings.path(settings.feedback.folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in ((FEEDBACK_FILE, folded.table), (QUARANTINE_FILE, folded.quarantined)):
        tmp = folder / f".{name}.tmp"
        frame.to_csv(tmp, index=False)
        tmp.replace(folder / name)
    summary = {"model": model, "window": {"since": window[0], "until": window[1]}, "counts": counts,
               "versions": sorted(votes["version"].astype(str).unique().tolist()) if len(votes) else [],
               "feedback_at": {"first": float(votes["at"].min()) if len(votes) else None,
                               "last": float(votes["at"].max()) if len(votes) else None}}
    (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    table = (folder / FEEDBACK_FILE).relative_to(settings.root).as_posix()
    dvc(settings.root, "add", table)
    return table
