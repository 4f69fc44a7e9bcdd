"""Register the run's best candidate as a new version and move @challenger when it earns it.

Versions are never deleted or overwritten; only aliases move. Each version carries, as tags,
what it is: strategy, base model and fingerprint, data hashes, validation result, git commit,
and its score, so later decisions and `lineage` read them back without rerunning anything.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import mlflow
from tasks.evaluation.metrics import accuracy, macro_f1
from tasks.evaluation.record import StrategyResult
from tasks.models.base import ResolvedBase
from tasks.registry.decisions import Decision, Reference, best_candidate, decide_challenger
from tasks.strategies import registry

ALIASES = ("champion", "challenger")


@dataclass(frozen=True)
class Registration:
    model_name: str
    version: str
    strategy: str
    metric_name: str
    metric: float
    decision: Decision

    def summary(self) -> str:
        alias = "@challenger set" if self.decision.set_challenger else "@challenger unchanged"
        return f"registered {self.model_name} v{self.version} ({self.strategy}); {alias}"


@dataclass(frozen=True)
class TestSet:
    """The test examples the candidates were scored on, to re-score older versions."""

    split_md5: str            # DVC md5 of the test split
    texts: list[str]
    labels: np.ndarray        # label ids in `label_names` order (generation: empty)
    label_names: list[str]
    references: list[str] | None = None   # generation: the target texts
    task: str = "classification"

    @property
    def data_version(self) -> str:
        """Scores compare only on the same examples: the split and how many of it were used."""
        return f"{self.split_md5}/{len(self.texts)}"

    def label_ids(self, predicted) -> np.ndarray:
        names = {n: i for i, n in enumerate(self.label_names)}
        return predicted["label"].map(names).to_numpy()


def _text_mean(field: str):
    def score(test: TestSet, predicted) -> float:
        from tasks.evaluation.text_metrics import text_scores

        return float(getattr(text_scores(predicted["output"].tolist(), test.references), field).mean())
    return score


# Metrics a version can be re-scored on from its predictions alone: (test set, its outputs) -> score.
RESCORABLE = {"test_accuracy": lambda t, out: accuracy(t.labels, t.label_ids(out)),
              "test_macro_f1": lambda t, out: macro_f1(t.labels, t.label_ids(out), len(t.label_names)),
              "test_rougeL": _text_mean("rougeL"), "test_chrf": _text_mean("chrf")}


def rescore(model_name: str, version: str, test: TestSet, metric_name: str) -> float:
    """The version's score on `test`, predicted through adaptflow's own loader (its manifest names
    the strategy; weights are safetensors): no code stored with the version runs."""
    import tempfile

    from tasks.training.artifact import fetch_version, load_predictor, predict_texts

    with tempfile.TemporaryDirectory(prefix="adaptflow-rescore-") as tmp:
        model, tokenizer, manifest = load_predictor(fetch_version(model_name, version, Path(tmp)))
        if manifest.task != test.task:
            raise ValueError(f"{model_name} v{version} is a {manifest.task} model; this run's task is {test.task}")
        predicted = predict_texts(model, tokenizer, manifest, test.texts)
    return float(RESCORABLE[metric_name](test, predicted))


def reference(client: MlflowClient, model_name: str, alias: str, metric_name: str,
              test: TestSet | None = None) -> tuple[Reference | None, str | None]:
    """The alias holder's score; re-scored on `test` when it was scored on other test examples."""
    try:
        mv = client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None, None  # no such model or alias yet
    raw = mv.tags.get(f"metric.{metric_name}")
    ref = Reference(alias=alias, version=str(mv.version), metric=float(raw) if raw is not None else None,
                    data_version=mv.tags.get("eval.test_key", ""))
    if test is None or ref.data_version == test.data_version:
        return ref, None
    if metric_name not in RESCORABLE:
        return ref, f"@{alias} v{ref.version}: {metric_name} cannot be re-scored on this run's test examples"
    score = rescore(model_name, ref.version, test, metric_name)
    note = (f"@{alias} v{ref.version} re-scored on the new test data {test.data_version[:8]} "
            f"({len(test.texts)} examples): {metric_name} {score:.4f} (was {ref.metric:.4f} on "
            f"{ref.data_version[:8] or 'unrecorded examples'})")
    return Reference(alias, ref.version, score, test.data_version), note


def base_model_name(base_name: str) -> str:
    """`base-<name>`: the registered model holding one version per base fingerprint."""
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(base_name).name.lower())
    return f"base-{slug.removeprefix('gt-')}"


def ensure_base_registered(client: MlflowClient, base: ResolvedBase) -> str:
    """The base model is registered once per fingerprint; returns `name/version`. Its weights
    stay where the package (or the local SmolLM2 cache) put them: the version's source points
    there and its fingerprint tag is what adapters are checked against."""
    name = base_model_name(base.name)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="A base model that adapters are bound to.")
    for mv in client.search_model_versions(f"name='{name}'"):
        if mv.tags.get("fingerprint") == base.fingerprint:
            return f"{name}/{mv.version}"
    # A tracking server refuses a local path as a version source (MLflow 3 checks sources), and a
    # path on the training machine means nothing to its other clients: there the source names the
    # base and its fingerprint; the fingerprint tag is what adapters are checked against anyway.
    local = mlflow.get_registry_uri().startswith(("sqlite:", "file:", "/"))
    source = base.path.resolve().as_uri() if local else f"adaptflow-base:{base.name}@{base.fingerprint[:16]}"
    mv = client.create_model_version(name, source=source,
                                     tags={"fingerprint": base.fingerprint, "base.name": base.name},
                                     description=f"{base.name} at {base.path}")
    return f"{name}/{mv.version}"


def register_best(model_name: str, metric_name: str, min_improvement: float,
                  budgets: dict[str, float | None], results: list[StrategyResult],
                  version_tags: dict[str, str], test: TestSet) -> Registration:
    client = MlflowClient()
    test_hash = test.data_version
    # Only strategies scored on the run's common test examples compete (few_shot may score a
    # smaller subset); if none was, all do.
    common = [r for r in results if int(r.metrics.get("test_examples", -1)) == len(test.texts)] or results
    scores = {r.strategy: r.metrics[metric_name] for r in common}
    chosen = next(r for r in results if r.strategy == best_candidate(scores))
    refs, notes = [], []
    for alias in ALIASES:
        ref, note = reference(client, model_name, alias, metric_name, test)
        refs += [ref] if ref else []
        notes += [note] if note else []
    decision = decide_challenger(metric_name, chosen.metrics[metric_name], test_hash, refs,
                                 min_improvement, chosen.metrics, budgets)
    decision = Decision(decision.set_challenger, notes + decision.reasons)

    strategy = registry.get(chosen.strategy, test.task)
    base = chosen.base
    tags = {**version_tags, "strategy": chosen.strategy, "saves": chosen.saves, "run_id": chosen.run_id,
            "base.name": base.name, "base.fingerprint": base.fingerprint,
            "base.registered": ensure_base_registered(client, base), "task": test.task,
            "adapter.library": strategy.library, "adapter.type": chosen.strategy,
            "adapter.config": json.dumps(chosen.params, sort_keys=True, default=str)[:5000],
            "data.test_md5": test.split_md5, "eval.test_key": test_hash,
            f"metric.{metric_name}": repr(chosen.metrics[metric_name]),
            "challenger_decision": "set" if decision.set_challenger else "kept previous",
            "challenger_reasons": " | ".join(decision.reasons)}
    for key, value in chosen.metrics.items():
        tags.setdefault(f"metric.{key}", repr(value))
    mv = mlflow.register_model(chosen.model_uri, model_name, tags=tags)
    if decision.set_challenger:
        client.set_registered_model_alias(model_name, "challenger", mv.version)
    return Registration(model_name=model_name, version=str(mv.version), strategy=chosen.strategy,
                        metric_name=metric_name, metric=chosen.metrics[metric_name], decision=decision)
