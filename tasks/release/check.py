"""One canary check: read where the canary stands (registry) and what both arms did since it
started (outcome store), decide (tasks/release/decide.py), act, and leave the evidence: the page,
an MLflow run per canary with one step per check, and tags on the version.

  rollback  share to 0 and the canary alias removed: an audit entry by the account the check
            runs as (the pipeline's), with the evidence; the canary's training run is tagged
  hold      nothing changes
  ready     the evidence goes on the version for a reviewer; with canary.auto_promote the check
            promotes it itself (audited) and ends the canary
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from tasks.config import CanarySettings
from tasks.outcomes.store import OutcomeStore
from tasks.registry import canary as canary_registry
from tasks.registry.canary_state import MAX_TAG_CHARS, canary_state
from tasks.release.decide import Decision, decide
from tasks.release.evidence import signals_for, split_rows, window
from tasks.release.page import render

EXPERIMENT = "adaptflow-canary"


@dataclass(frozen=True)
class CheckResult:
    model: str
    action: str                    # rollback / hold / ready / promoted / none (no canary running)
    reason: str
    canary_version: str | None = None
    champion_version: str | None = None
    decision: Decision | None = None
    page: Path | None = None
    run_id: str | None = None
    audit_seq: int | None = None

    def line(self) -> str:
        if self.canary_version is None:
            return f"{self.model}: {self.reason}"
        return f"{self.model} canary v{self.canary_version} vs @champion v{self.champion_version}: {self.action}: {self.reason}"


def check_canary(client: MlflowClient, tracking_uri: str, model: str, settings: CanarySettings, store: OutcomeStore,
                 out_dir: Path, now: float | None = None) -> CheckResult:
    now = now or time.time()
    state = canary_state(client, model)
    if state is None:
        return CheckResult(model, "none", "no canary running; nothing to check")
    champion = canary_registry.current_champion(client, model)
    rows = split_rows(store.outcomes(model, since=state.started, until=now), state.version)
    failures = [e.detail for e in store.events(model, state.started, "refused") if e.version == state.version]
    signals = signals_for(rows)
    w = window(rows, signals)
    decision = decide(w.canary, w.champion, settings, (now - state.started) / 60, failures)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / f"canary-{model}-v{state.version}.html"
    page.write_text(render(model=model, canary_version=state.version, champion_version=champion, share=state.share,
                           started=state.started, rows=rows, signals=signals, settings=settings, decision=decision,
                           now=now))
    run_id = _log_check(client, model, state, decision, page, w.slow_ms)
    evidence = {**decision.evidence(), "page_run": run_id, "champion": champion}
    client.set_model_version_tag(model, state.version, "canary.last_check",
                                 json.dumps({"at": round(now, 3), "action": decision.action,
                                             "reason": decision.reason})[:MAX_TAG_CHARS])
    made = lambda action, seq=None: CheckResult(model, action, decision.reason, state.version, champion, decision,
                                                page, run_id, seq)
    if decision.action == "rollback":
        entry = canary_registry.roll_back(client, tracking_uri, model, f"canary check: {decision.reason}",
                                          evidence, state.version)
        return made("rollback", entry.seq if entry else None)
    if decision.action == "ready":
        client.set_model_version_tag(model, state.version, "canary.evidence", json.dumps(evidence)[:MAX_TAG_CHARS])
        if settings.auto_promote:
            entry = canary_registry.promote_ready(client, tracking_uri, model, state.version, decision.reason,
                                                  evidence)
            return made("promoted", entry.seq)
    return made(decision.action)


def _log_check(client: MlflowClient, model: str, state, decision: Decision, page: Path, slow_ms) -> str:
    """One MLflow run per canary (found by its tags), one step per check: the MLflow UI plots the
    statistics over the checks; the latest page is its artifact."""
    from mlflow.entities import Metric

    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    key = f"{model}/v{state.version}/{state.started:.3f}"
    found = client.search_runs([experiment_id], filter_string=f"tags.`adaptflow.canary` = '{key}'", max_results=1)
    run_id = found[0].info.run_id if found else client.create_run(
        experiment_id, tags={"adaptflow.canary": key, "mlflow.runName": f"canary {model} v{state.version}"}).info.run_id
    step = len(client.get_metric_history(run_id, "canary_requests"))
    stamp = int(time.time() * 1000)
    metrics = {"canary_requests": decision.canary_requests, "champion_requests": decision.champion_requests}
    if slow_ms is not None:
        metrics["champion_p95_ms"] = slow_ms
    for name, t in decision.tests.items():
        metrics.update({f"{name}_diff": t.diff, f"{name}_log_lr": t.log_lr,
                        f"{name}_lower": t.lower if t.canary_n else 0.0})
    client.log_batch(run_id, metrics=[Metric(k, float(v), stamp, step) for k, v in metrics.items()],
                     tags=[])
    client.set_tag(run_id, "adaptflow.canary.decision", decision.action)
    client.log_artifact(run_id, str(page))
    return run_id
