"""Feedback quality as a retrain trigger, per model: over the @champion version's latest
feedback.quality_window_rows accepted feedback rows (the poisoning rules replayed first, so a
flood from one key cannot start a retrain), the quality its task type gives feedback
(TaskType.feedback_quality: label agreement for classification, ratings for generation). The
verdict (`judge`, pure) asks for evidence, not a dip: it fires only when the upper end of the
one-sided (1 - quality_alpha) normal interval of the mean is under feedback.retrain_below_quality,
with at least quality_min_rows judging rows. The drift-check flow calls it, records the verdict
in the outcome store (a serving event of kind `feedback_quality`) and starts `retrain` with it."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from statistics import NormalDist

from tasks.config import FeedbackSettings
from tasks.outcomes.feedback import FeedbackRow, feedback_rows, replay
from tasks.outcomes.store import OutcomeStore, ServingEvent
from tasks.tasktypes import task_type

MEASURES = {"agreement": "the share of feedback labels equal to the label shown",
            "rating": "the mean rating scaled to 0..1"}


@dataclass(frozen=True)
class QualityVerdict:
    model: str
    version: str | None        # the version judged (@champion), None: every version's feedback
    rows: int                  # accepted feedback rows in the window
    judged: int                # of them, rows that judge the answer (a label on a labelled answer, a rating)
    quality: float | None      # their mean
    upper: float | None        # the upper end of its one-sided (1 - quality_alpha) interval
    retrain: bool
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def score(row: FeedbackRow) -> float | None:
    """What one feedback row says about the answer it is on (0..1), or None when it does not judge
    it: classification, 1 when the label given is the label shown (an abstained or blocked answer
    showed none); generation, the rating scaled to 0..1."""
    measure = task_type(row.task).feedback_quality
    if measure == "agreement":
        return None if row.label is None or row.answer is None else float(row.label == row.answer)
    return None if row.rating is None else (row.rating - 1) / 4


def judge(model: str, version: str | None, scores: list[float | None], settings: FeedbackSettings,
          measure: str = "agreement") -> QualityVerdict:
    """The verdict on one window of scores (None: a row that does not judge; counted, not used)."""
    judged = [s for s in scores if s is not None]
    who = f"{model}" + (f" v{version}" if version else "")
    if settings.retrain_below_quality is None:
        return QualityVerdict(model, version, len(scores), len(judged), _mean(judged), None, False,
                              "feedback.retrain_below_quality is null: feedback quality starts no retrain")
    if len(judged) < settings.quality_min_rows:
        return QualityVerdict(model, version, len(scores), len(judged), _mean(judged), None, False,
                              f"{len(judged)} judging feedback rows on {who}, fewer than "
                              f"feedback.quality_min_rows={settings.quality_min_rows}: no verdict")
    mean = sum(judged) / len(judged)
    sd = math.sqrt(sum((s - mean) ** 2 for s in judged) / (len(judged) - 1))
    upper = mean + NormalDist().inv_cdf(1 - settings.quality_alpha) * sd / math.sqrt(len(judged))
    low = upper < settings.retrain_below_quality
    what = (f"feedback quality on {who} ({MEASURES[measure]}) {mean:.3f} over its last {len(judged)} judging rows, "
            f"upper {100 * (1 - settings.quality_alpha):g} % bound {upper:.3f}")
    reason = (f"{what} < feedback.retrain_below_quality={settings.retrain_below_quality:g}" if low else
              f"{what}: not under feedback.retrain_below_quality={settings.retrain_below_quality:g}")
    return QualityVerdict(model, version, len(scores), len(judged), mean, upper, low, reason)


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def feedback_quality(store: OutcomeStore, model: str, version: str | None,
                     settings: FeedbackSettings) -> QualityVerdict:
    """`judge` on the version's latest quality_window_rows feedback rows the poisoning rules accept
    (all versions' when `version` is None)."""
    accepted, _ = replay(feedback_rows(store, model), settings)
    rows = [r for r in accepted if version is None or r.version == version][-settings.quality_window_rows:]
    measure = task_type(rows[-1].task).feedback_quality if rows else "agreement"
    return judge(model, version, [score(r) for r in rows], settings, measure)


def record(store: OutcomeStore, verdict: QualityVerdict) -> None:
    """The verdict as a serving event of kind `feedback_quality` (beside the feedback it judged)."""
    store.write([], [ServingEvent(time.time(), "drift-check", verdict.model, verdict.version or "",
                                  "feedback_quality", json.dumps(verdict.as_dict()))])
