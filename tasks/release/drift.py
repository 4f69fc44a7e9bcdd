"""Drift on live inputs, per model: the latest window of answered requests (their texts, stored
with outcomes.store_texts) against the validation split of the data version the model was trained
on: embeddings (MMD on MiniLM features), text length (KS) and, for a classifier, the predicted
labels (chi-square against the labels the same version predicts for the validation texts). The tests are tasks/evaluation/drift_tests.py;
the verdict is recorded in the outcome store (a serving event of kind `drift`), and the flow
starts `retrain` with it when drift.retrain is on."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
from sqlalchemy import select

from tasks.config import DriftSettings
from tasks.evaluation.drift_tests import SampleTest, drifted, label_test, length_test, mmd_test
from tasks.outcomes.store import REQUEST_TEXTS, OutcomeStore, ServingEvent


@dataclass(frozen=True)
class LiveWindow:
    texts: list[str]
    labels: list[str]          # the labels shown (classification; abstained/blocked left out)
    versions: list[str]
    since: float
    until: float
    answered_most: str = ""    # the version that answered most of the window (the label test's reference)


@dataclass(frozen=True)
class DriftReport:
    model: str
    requests: int
    tests: list[SampleTest]
    drifted: list[str]          # the names of the tests under alpha / len(tests)
    reason: str

    @property
    def drift(self) -> bool:
        return bool(self.drifted)

    def as_dict(self) -> dict:
        return {**asdict(self), "drift": self.drift}


def live_window(store: OutcomeStore, model: str, requests: int) -> LiveWindow | None:
    """The model's latest `requests` answered requests with stored texts (None: none stored)."""
    store.create()
    query = (select(REQUEST_TEXTS).where(REQUEST_TEXTS.c.model == model)
             .order_by(REQUEST_TEXTS.c.at.desc()).limit(requests))
    with store.engine.connect() as conn:
        rows = [r._mapping for r in conn.execute(query)]
    if not rows:
        return None
    texts, labels, versions = [], [], []
    for r in rows:
        inputs, outputs = json.loads(r["inputs"]), json.loads(r["outputs"])
        texts += inputs
        labels += [o for o in outputs if isinstance(o, str)] if json.loads(r["labels"]) else []
        versions.append(r["version"])
    most = max(sorted(set(versions)), key=versions.count)
    return LiveWindow(texts, labels, sorted(set(versions)), min(r["at"] for r in rows), max(r["at"] for r in rows),
                      most)


def labels_given(model: str, version: str, texts: list[str]) -> list[str]:
    """The labels `version` gives the reference texts: the label test then compares the model with
    itself, live against validation. Against the validation split's true labels, a model that leans
    to one label looked like drift on in-domain traffic (the smoke feedback loop's weak model:
    chi-square p = 0.0017, bench/feedback_loop.py)."""
    from tasks.registry.versions import version_answers

    return version_answers(model, version, texts, "classification")["label"].astype(str).tolist()


def check(model: str, live_texts: list[str], live_labels: list[str], reference_texts: list[str],
          reference_labels: list[str], embed: Callable[[list[str]], np.ndarray], settings: DriftSettings,
          seed: int = 0) -> DriftReport:
    """The three tests on one window (two for generation: no labels); `embed` maps texts to rows."""
    if len(live_texts) < settings.min_requests:
        return DriftReport(model, len(live_texts), [], [], f"{len(live_texts)} live texts, fewer than "
                                                           f"drift.min_requests={settings.min_requests}: no verdict")
    rng = np.random.default_rng(seed)
    if len(reference_texts) > settings.reference_rows:
        keep = np.sort(rng.choice(len(reference_texts), settings.reference_rows, replace=False))
        reference_texts = [reference_texts[i] for i in keep]
        reference_labels = [reference_labels[i] for i in keep] if reference_labels else []
    tests = [mmd_test(embed(live_texts), embed(reference_texts), settings.permutations, seed),
             length_test(np.array([len(t) for t in live_texts]), np.array([len(t) for t in reference_texts]))]
    if reference_labels and live_labels:
        tests.append(label_test(live_labels, reference_labels))
    found = [t for t in drifted(tests, settings.alpha) if t.name != "embedding_mmd" or t.statistic >= settings.min_mmd]
    threshold = settings.alpha / len(tests)
    reason = (f"drift on {model}'s last {len(live_texts)} live inputs vs its validation data: "
              + "; ".join(f"{t.name} p={t.p_value:.2g} < {threshold:.2g}" for t in found) if found else
              f"no drift on {model}'s last {len(live_texts)} live inputs (p under {threshold:.2g} and, for the "
              f"embeddings, MMD² at least drift.min_mmd={settings.min_mmd:g} needed: "
              + ", ".join(f"{t.name} p={t.p_value:.2g}" + (f" MMD²={t.statistic:.3g}" if t.name == "embedding_mmd" else "")
                          for t in tests) + ")")
    return DriftReport(model, len(live_texts), tests, [t.name for t in found], reason)


def record(store: OutcomeStore, report: DriftReport, version: str) -> None:
    """The verdict as a serving event of kind `drift` (durable, beside the outcomes it judged)."""
    store.write([], [ServingEvent(time.time(), "drift-check", report.model, version, "drift",
                                  json.dumps(report.as_dict()))])
