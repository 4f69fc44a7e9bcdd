"""Register the run's best candidate as a new version and move @challenger when it earns it.

Versions are never deleted or overwritten; only aliases move. Each version carries, as tags,
what it is: strategy, base model and fingerprint, data hashes, validation result, git commit,
and its score, so later decisions and `lineage` read them back without rerunning anything.
"""
from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.decisions import Decision, Reference, best_candidate, decide_challenger
from tasks.run_strategy import StrategyResult

ALIASES = ("champion", "challenger")


@dataclass(frozen=True)
class Registration:
    model_name: str
    version: str
    strategy: str
    metric_name: str
    metric: float
    decision: Decision


def reference(client: MlflowClient, model_name: str, alias: str, metric_name: str) -> Reference | None:
    try:
        mv = client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None  # no such model or alias yet
    raw = mv.tags.get(f"metric.{metric_name}")
    return Reference(alias=alias, version=str(mv.version),
                     metric=float(raw) if raw is not None else None,
                     data_version=mv.tags.get("data.test_md5", ""))


def register_best(model_name: str, metric_name: str, min_improvement: float,
                  results: list[StrategyResult], version_tags: dict[str, str],
                  test_hash: str) -> Registration:
    client = MlflowClient()
    scores = {r.strategy: r.metrics[metric_name] for r in results}
    chosen = next(r for r in results if r.strategy == best_candidate(scores))
    refs = [ref for alias in ALIASES if (ref := reference(client, model_name, alias, metric_name))]
    decision = decide_challenger(metric_name, chosen.metrics[metric_name], test_hash, refs, min_improvement)

    tags = {**version_tags, "strategy": chosen.strategy, "saves": chosen.saves, "run_id": chosen.run_id,
            "data.test_md5": test_hash, f"metric.{metric_name}": repr(chosen.metrics[metric_name]),
            "challenger_decision": "set" if decision.set_challenger else "kept previous",
            "challenger_reasons": " | ".join(decision.reasons)}
    for key, value in chosen.metrics.items():
        tags.setdefault(f"metric.{key}", repr(value))
    mv = mlflow.register_model(chosen.model_uri, model_name, tags=tags)
    if decision.set_challenger:
        client.set_registered_model_alias(model_name, "challenger", mv.version)
    return Registration(model_name=model_name, version=str(mv.version), strategy=chosen.strategy,
                        metric_name=metric_name, metric=chosen.metrics[metric_name], decision=decision)
