"""The output policy on served answers: the checker evaluation used (tasks/evaluation/policy.py),
applied to each output of a request on its own. A blocked output is replaced by which rules it
broke, never by any of its text; an unsure classification abstains. Each is counted in /metrics
and logged without the output's content. One blocked output never fails the rest of a request.

Response shapes (docs/policy.md):
  /generate: "outputs": [text or null], "policy": [{"blocked": bool, "rules": [...]}] (same order)
  /predict:  a blocked label: {"label": null, "blocked": true, "rules": [...]};
             an abstention:  {"label": null, "abstained": true, "reason": ..., "probabilities": {...}}
"""
from __future__ import annotations

import logging
from typing import Any

from tasks.evaluation.policy import OutputPolicy, Verdict
from tasks.serving.metrics import ServingMetrics

log = logging.getLogger("adaptflow.serving")


def _record(metrics: ServingMetrics, where: str, model: str, version: str, index: int, verdict: Verdict) -> None:
    for rule in verdict.rules:
        metrics.policy_blocked.labels(model, rule).inc()
    # Which rules, never the text: the log must not hold what the policy kept from the user.
    log.warning("policy blocked %s output %d of %s v%s: %s", where, index, model, version, ", ".join(verdict.rules))


def guard_outputs(policy: OutputPolicy, metrics: ServingMetrics, model: str, version: str,
                  outputs: list[str]) -> tuple[list[str | None], list[dict[str, Any]]]:
    """(what the client sees, one verdict per output) for a /generate answer."""
    shown, verdicts = [], []
    for i, text in enumerate(outputs):
        verdict = policy.check(text)
        if verdict.blocked:
            _record(metrics, "/generate", model, version, i, verdict)
        shown.append(None if verdict.blocked else text)
        verdicts.append({"blocked": verdict.blocked, "rules": list(verdict.rules)})
    return shown, verdicts


def guard_prediction(policy: OutputPolicy, metrics: ServingMetrics, model: str, version: str, index: int,
                     label: str, probabilities: dict[str, float]) -> dict[str, Any]:
    """One /predict answer: the label, blocked (a deny rule matched it) or abstained."""
    verdict = policy.check_label(label)
    if verdict.blocked:
        _record(metrics, "/predict", model, version, index, verdict)
        return {"label": None, "blocked": True, "rules": list(verdict.rules)}
    confidence = probabilities[label]
    if policy.abstains(confidence):
        metrics.abstentions.labels(model).inc()
        return {"label": None, "abstained": True, "probability": confidence, "probabilities": probabilities,
                "reason": f"confidence {confidence:.3f} is below policy.min_confidence "
                          f"{policy.settings.min_confidence:g}: route to a person"}
    return {"label": label, "probability": confidence, "probabilities": probabilities}
