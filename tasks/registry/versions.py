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
from tasks.evaluation.selection import candidates, choose
from tasks.models.base import ResolvedBase
from tasks.registry.decisions import Decision, Kind, Reference, decide_challenger
from tasks.strategies import registry
from tasks.tasktypes import DEFAULT
from tasks.tracking import VERSION_METRIC_TAG   # `metric.<name>`: the label-length limit is computed from it

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
class ScoringSet:
    """The examples the candidates are compared on (the validation split: selection never reads
    test), to re-score older versions on the same examples."""

    split_md5: str            # DVC md5 of the split
    texts: list[str]
    labels: np.ndarray        # label ids in `label_names` order (generation: empty)
    label_names: list[str]
    references: list[str] | None = None   # generation: the target texts
    task: str = DEFAULT
    split: str = "validation"

    @property
    def data_version(self) -> str:
        """Scores compare only on the same examples: the split and how many of it were used."""
        return f"{self.split_md5}/{len(self.texts)}"

    def label_ids(self, predicted) -> np.ndarray:
        names = {n: i for i, n in enumerate(self.label_names)}
        return predicted["label"].map(names).to_numpy()


def _text_mean(field: str):
    def score(examples: ScoringSet, predicted) -> float:
        from tasks.evaluation.text_metrics import text_scores

        return float(getattr(text_scores(predicted["output"].tolist(), examples.references), field).mean())
    return score


# Metrics a version can be re-scored on from its predictions alone: (examples, its outputs) -> score.
# The same for a metric's validation twin (val_macro_f1 ...): the scorer does not care which split.
_SCORERS = {"accuracy": lambda t, out: accuracy(t.labels, t.label_ids(out)),
            "macro_f1": lambda t, out: macro_f1(t.labels, t.label_ids(out), len(t.label_names)),
            "rougeL": _text_mean("rougeL"), "chrf": _text_mean("chrf")}
RESCORABLE = {f"{split}_{name}": scorer for name, scorer in _SCORERS.items() for split in ("test", "val")}


def rescore(model_name: str, version: str, examples: ScoringSet, metric_name: str) -> float:
    """The version's score on `examples` (its answers: `version_answers`)."""
    predicted = version_answers(model_name, version, examples.texts, examples.task)
    return float(RESCORABLE[metric_name](examples, predicted))


def version_answers(model_name: str, version: str, texts: list[str], task: str) -> "pd.DataFrame":
    """The version's answers to `texts` (`Prediction.frame()`: label and probabilities, or output),
    predicted through adaptflow's own loader (its manifest names the strategy; weights are
    safetensors): no code stored with the version runs. A version of another task is refused
    before its weights load."""
    import tempfile

    from tasks.artifacts.fetch import fetch_version, registered_base
    from tasks.artifacts.predictor import load_saved, predict, read_version

    with tempfile.TemporaryDirectory(prefix="adaptflow-answers-") as tmp:
        saved = read_version(fetch_version(model_name, version, Path(tmp)), registered_base(model_name, version))
        if saved.manifest.task != task:
            raise ValueError(f"{model_name} v{version} is a {saved.manifest.task} model; this run's task is {task}")
        return predict(load_saved(saved), texts).frame()


def version_kind(tags: dict[str, str]) -> Kind | None:
    """The task type and data source a version's tags record (None for a version registered
    before both were recorded)."""
    task, source = tags.get("task"), tags.get("data.source")
    return Kind(task, source) if task and source else None


def reference(client: MlflowClient, model_name: str, alias: str, metric_name: str,
              examples: ScoringSet | None = None, kind: Kind | None = None) -> tuple[Reference | None, str | None]:
    """The alias holder's score; re-scored on `examples` when it was scored on other examples
    and is of the candidate's `kind` (a model of another task or data is never re-scored)."""
    try:
        mv = client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None, None  # no such model or alias yet
    raw = mv.tags.get(f"{VERSION_METRIC_TAG}{metric_name}")
    ref = Reference(alias=alias, version=str(mv.version), metric=float(raw) if raw is not None else None,
                    data_version=mv.tags.get("eval.selection_key", ""), kind=version_kind(mv.tags))
    if examples is None or ref.data_version == examples.data_version:
        return ref, None
    if kind is not None and ref.kind is not None and ref.kind != kind:
        return ref, None   # another kind of model: decide_challenger says why it is not compared
    if metric_name not in RESCORABLE:
        return ref, f"@{alias} v{ref.version}: {metric_name} cannot be re-scored on this run's examples"
    score = rescore(model_name, ref.version, examples, metric_name)
    note = (f"@{alias} v{ref.version} re-scored on this run's {examples.split} examples {examples.data_version[:8]} "
            f"({len(examples.texts)} examples): {metric_name} {score:.4f} (was "
            f"{'unrecorded' if ref.metric is None else f'{ref.metric:.4f}'} on "
            f"{ref.data_version[:8] or 'unrecorded examples'})")
    return Reference(alias, ref.version, score, examples.data_version, ref.kind), note


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
                  version_tags: dict[str, str], scoring: ScoringSet, tolerance_points: float = 1.0) -> Registration:
    """Register the strategy `recommend` picks on `metric_name` (the report's recommendation:
    one rule), and set @challenger when it is inside the budgets and beats the alias holders
    re-scored on the same `scoring` examples. Nothing fits the budgets: the best is registered
    for the record and @challenger stays."""
    client = MlflowClient()
    rec = choose([(r.strategy, r.metrics) for r in results], metric_name, tolerance_points, budgets, metric_name)
    named = {r.strategy: r for r in results}
    scored = candidates([(n, r.metrics) for n, r in named.items()], metric_name)
    if not scored:
        raise ValueError(f"no strategy produced {metric_name}; nothing to register")
    # Nothing inside the budgets: the best on validation is registered for the record; the gate refuses it.
    pick = rec.choice if rec.choice != "none" else max(scored, key=lambda c: c.score).name
    chosen = named[pick]
    kind = version_kind({"task": scoring.task, **version_tags})   # run_tags record data.source
    refs, notes = [], []
    for alias in ALIASES:
        ref, note = reference(client, model_name, alias, metric_name, scoring, kind)
        refs += [ref] if ref else []
        notes += [note] if note else []
    decision = decide_challenger(metric_name, chosen.metrics[metric_name], scoring.data_version, refs,
                                 min_improvement, chosen.metrics, budgets, kind)
    decision = Decision(decision.set_challenger, [f"candidate: {rec.sentence}"] + notes + decision.reasons)

    strategy = registry.get(chosen.strategy, scoring.task)
    base = chosen.base
    tags = {**version_tags, "strategy": chosen.strategy, "saves": chosen.saves, "run_id": chosen.run_id,
            "base.name": base.name, "base.fingerprint": base.fingerprint,
            "base.registered": ensure_base_registered(client, base), "task": scoring.task,
            "adapter.library": strategy.library, "adapter.type": chosen.strategy,
            "adapter.config": json.dumps(chosen.params, sort_keys=True, default=str)[:5000],
            f"data.{scoring.split}_md5": scoring.split_md5, "eval.selection_key": scoring.data_version,
            "eval.selection_split": scoring.split, "eval.selection_metric": metric_name,
            f"{VERSION_METRIC_TAG}{metric_name}": repr(chosen.metrics[metric_name]),
            "challenger_decision": "set" if decision.set_challenger else "kept previous",
            "challenger_reasons": " | ".join(decision.reasons)[:5000]}
    if chosen.params.get("data_version") and "embedder" in chosen.params:   # a retrieving strategy: its index
        tags |= {"retrieval.data_version": str(chosen.params["data_version"]),
                 "retrieval.embedder": str(chosen.params["embedder"])}
    for key, value in chosen.metrics.items():
        tags.setdefault(f"{VERSION_METRIC_TAG}{key}", repr(value))
    mv = mlflow.register_model(chosen.model_uri, model_name, tags=tags)
    if decision.set_challenger:
        client.set_registered_model_alias(model_name, "challenger", mv.version)
    return Registration(model_name=model_name, version=str(mv.version), strategy=chosen.strategy,
                        metric_name=metric_name, metric=chosen.metrics[metric_name], decision=decision)
