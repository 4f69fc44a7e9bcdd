"""Run one strategy: prepare its inputs, build it, train it (if it trains), evaluate and measure
it (`compute`: no MLflow), then record all of it in its own MLflow child run (`run_strategy`).
bench/bare.py calls `prepare_inputs` and `compute` exactly as the flow does."""
from __future__ import annotations

import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tasks.config import Settings, TrainSettings
from tasks.evaluation.cost import PeakRSS, measure_speed, merged_speed_metrics
from tasks.evaluation.forgetting import forgetting_metrics
from tasks.evaluation.metric_functions import probability_metrics
from tasks.evaluation.ownership import Measured, own
from tasks.evaluation.policy import OutputPolicy, label_policy_metrics
from tasks.evaluation.quality import quality_details, score, variant_mean_intervals
from tasks.evaluation.record import StrategyResult
from tasks.evaluation.statistics import reliability
from tasks.models.base import ResolvedBase, load_base
from tasks.models.encoding import Encoded, encode
from tasks.models.heads import Head
from tasks.models.loading import load_tokenizer
from tasks.models.subset import subset_indices
from tasks.strategies import registry
from tasks.training import record
from tasks.artifacts.manifest import Manifest, params_dict, write_artifact
from tasks.training.context import RunContext
from tasks.training.fitting import build_and_train
from tasks.training.hardware import check_hardware, evaluation_precision, is_main_process, threads_per_process
from tasks.training.loop import seed_everything
from tasks.training.switching import switching_metrics
from tasks.training.strategy_run import STAGE, Fitted, Outcome, StrategyInputs, TrainingPart, training_part
from tasks.training.variants import score_variants
from tasks.tasktypes import register_part, task_type

import tasks.training.generation  # noqa: F401,I001  (registers generation's TrainingPart)


def tightest_limit(*limits: int) -> int:
    """The smallest positive limit; 0 (no limit) when none is set."""
    return min((x for x in limits if x > 0), default=0)


def encode_splits(tokenizer, frames: dict[str, pd.DataFrame], labels: list[str], max_length: int,
                  max_train: int, max_eval: int, seed: int, params=None) -> dict[str, Encoded]:
    """Each split limited (the same rows wherever a limit applies) and encoded; with retrieval
    params (`<name>+retrieval`), each kept row carries its neighbours as a second segment (only
    the kept rows are searched; a train row's id in the index is its position in the split)."""
    ids = {label: i for i, label in enumerate(labels)}
    limits = {"train": max_train, "validation": max_eval, "test": max_eval}
    positions = {split: subset_indices(len(frame), limits[split], seed) for split, frame in frames.items()}
    picked = {split: frame.iloc[positions[split]] for split, frame in frames.items()}
    contexts, extra = {}, 0
    if params is not None:
        from tasks.strategies.retrieval_index import classification_context
        from tasks.strategies.with_retrieval import split_neighbours

        found = split_neighbours(params, picked, [int(i) for i in positions["train"]])
        contexts = {split: classification_context(rows, params.demo_max_chars) for split, rows in found.items()}
        extra = params.context_tokens
    return {split: encode(tokenizer, frame["text"].tolist(), frame["label"].map(ids).to_numpy(),
                          max_length, contexts.get(split), extra)
            for split, frame in picked.items()}


def prepare_inputs(settings: Settings, base: ResolvedBase, frames: dict[str, pd.DataFrame], name: str
                   ) -> StrategyInputs:
    """The strategy, its params and the encoded splits, as the task type prepares them."""
    return training_part(settings.task).prepare(settings, base, frames, name)


def prepare_classification_inputs(settings: Settings, base: ResolvedBase, frames: dict[str, pd.DataFrame],
                                  name: str) -> StrategyInputs:
    """Classification: the texts encoded (with retrieved neighbours for `<name>+retrieval`) and
    their label ids."""
    strategy = registry.get(name, settings.task)
    params = settings.strategy_params[name]
    cfg = settings.train
    hardware = check_hardware(cfg)
    torch.set_num_threads(threads_per_process(cfg, hardware))
    if getattr(params, "base", None) and params.base != base.name:
        base = load_base(params.base, settings.root)
    if strategy.retrieves:
        from tasks.strategies.with_retrieval import attach_index

        params = attach_index(params, frames["train"], task_type(settings.task).answer_column)
    tokenizer = load_tokenizer(base.path)
    # A strategy may score fewer test examples (a prompted LM is slow); always the same subset.
    max_eval = tightest_limit(cfg.max_eval_examples, getattr(params, "max_test_examples", 0))
    splits = encode_splits(tokenizer, frames, settings.validation.labels, settings.model.max_length,
                           cfg.max_train_examples, max_eval, cfg.seed, params if strategy.retrieves else None)
    return StrategyInputs(name=name, strategy=strategy, params=params, base=base, tokenizer=tokenizer,
                          labels=settings.validation.labels, splits=splits, train_frame=frames["train"],
                          hardware=hardware, head=Head.for_task(settings.task, settings.validation.labels))


def fit(inputs: StrategyInputs, cfg: TrainSettings, desc: str) -> Fitted:
    """Build, train if the strategy trains, and score on validation (what selection reads) and
    test (what the report shows)."""
    trained = build_and_train(inputs, cfg, desc)
    val, test = (score(trained.model, inputs.splits[s], len(inputs.labels), inputs.pad_id) for s in ("validation", "test"))
    return Fitted(trained.model, {"val_accuracy": val.accuracy, "val_macro_f1": val.macro_f1,
                                  "val_ece": reliability(val.probs, inputs.splits["validation"].labels).ece,
                                  "test_accuracy": test.accuracy, "test_macro_f1": test.macro_f1, **trained.metrics},
                  trained.training, test.probs, val.probs)


def learning_curve_points(inputs: StrategyInputs, cfg: TrainSettings, sizes: list[int]) -> list[tuple[int, float]]:
    """Data efficiency: (n, test accuracy) of the same recipe on n training examples, for each
    size below the run's own. The sets are nested (the first n of one seeded permutation), and
    seed, hyperparameters, validation split (early stopping) and test split are the main run's."""
    train_set = inputs.splits["train"]
    order = np.random.default_rng(cfg.seed).permutation(len(train_set))
    points = []
    for n in sorted(x for x in set(sizes) if x < len(train_set)):
        seed_everything(cfg.seed)
        subset = replace(inputs, splits={**inputs.splits, "train": train_set.select(np.sort(order[:n]))},
                         trained=None)
        points.append((n, fit(subset, cfg, f"{inputs.name} (n={n})").metrics["test_accuracy"]))
    return points


def compute(inputs: StrategyInputs, settings: Settings) -> Outcome:
    """Train (or score every prompt variant), then every measurement the run record holds, then
    the spread over evaluation.seeds."""
    outcome = training_part(inputs.head.task).compute(inputs, settings)
    outcome.metrics["val_examples"] = float(len(inputs.splits["validation"]))
    outcome.metrics.update(seed_spread(inputs, settings, outcome.metrics))
    return outcome


def seed_spread(inputs: StrategyInputs, settings: Settings, metrics: dict[str, float]) -> dict[str, float]:
    """The same recipe (the run's params, tuned or not) trained again with each other seed of
    evaluation.seeds; mean and std over all seeds, the run's own included. Seeds change the
    initialisation and the data order, never the split."""
    seeds = [s for s in settings.evaluation.seeds if s != settings.train.seed]
    if not seeds or not inputs.strategy.trains:
        return {}
    keys = task_type(inputs.head.task).seed_keys   # the scores whose spread over seeds is logged
    runs = [{k: metrics[k] for k in keys}]
    for seed in seeds:
        cfg = replace(settings.train, seed=seed)
        seed_everything(seed)
        scores = training_part(inputs.head.task).seed_scores(replace(inputs, trained=None), replace(settings, train=cfg))
        runs.append({k: scores[k] for k in keys})
    out = {"seeds_run": float(len(runs))}
    for k in keys:
        values = np.array([r[k] for r in runs])
        out |= {f"{k}_seed_mean": float(values.mean()), f"{k}_seed_std": float(values.std(ddof=1))}
    return out


def compute_classification(inputs: StrategyInputs, settings: Settings) -> Outcome:
    cfg, ev, test = settings.train, settings.evaluation, inputs.splits["test"]
    seed_everything(cfg.seed)
    with PeakRSS() as rss:
        fitted, variants = None, None
        if inputs.strategy.variants is None:
            fitted = fit(inputs, cfg, inputs.name)
            model, params, metrics, probs = fitted.model, inputs.params, dict(fitted.metrics), fitted.test_probs
            val_probs = fitted.val_probs
        else:
            variants = score_variants(inputs)
            model, params, metrics, probs = variants.model, variants.params, variants.metrics(), variants.test_probs
            val_probs = variants.val_probs
        details = quality_details(probs, test.labels, inputs.labels, cfg.seed)
        metrics |= details.metrics
        if variants is not None:   # the intervals belong to the mean over variants
            metrics |= variant_mean_intervals(test.labels, variants.test_preds, len(inputs.labels), cfg.seed)
        speed = measure_speed(model, test, inputs.pad_id, ev.latency_examples, ev.throughput_batches)
        measure = inputs.strategy.retrieval_metrics   # a retrieving strategy: the index and what a query costs
        if measure is not None:
            metrics |= measure(model, list(test.sources[:100]), inputs.tokenizer, None)
    training = fitted.training if fitted else None
    # Outside the peak-memory window: the personal-data recognisers are the policy's, not the model's.
    metrics |= probability_metrics({"val": (val_probs, inputs.splits["validation"].labels), "test": (probs, test.labels)})
    metrics |= label_policy_metrics(OutputPolicy(settings.policy), inputs.labels,
                                    {"val_": (val_probs, inputs.splits["validation"].labels),
                                     "test_": (probs, test.labels)})
    metrics |= asdict(speed) | {"peak_rss_mb": rss.peak_mb, "test_examples": float(len(test)),
                                "train_seconds": training.train_seconds if training else 0.0}
    # After the peak-memory window: the probe loads a second copy of the base.
    metrics |= forgetting_metrics(model, inputs.strategy.trains, inputs.base, inputs.head, inputs.tokenizer,
                                  ev, cfg.seed, evaluation_precision(inputs.hardware))
    if inputs.strategy.merge is not None and ev.merged_latency:
        metrics |= merged_speed_metrics(model, inputs.strategy.merge, test, inputs.pad_id,
                                        ev.latency_examples, ev.throughput_batches)
    curve = None
    if inputs.name in ev.learning_curve_strategies:
        curve = learning_curve_points(replace(inputs, params=params), cfg, ev.learning_curve_sizes)
        curve.append((len(inputs.splits["train"]), metrics["test_accuracy"]))   # the run itself, last
    return Outcome(model, params, metrics, details, training, variants, curve)


def save_outcome(inputs: StrategyInputs, outcome: Outcome, settings: Settings, folder: Path) -> int:
    """The artifact a registered version would hold, written to `folder`; returns its bytes."""
    manifest = Manifest(strategy=inputs.name, params=params_dict(outcome.params), labels=inputs.labels,
                        max_length=settings.model.max_length, base_name=inputs.base.name,
                        base_fingerprint=inputs.base.fingerprint, saves=inputs.strategy.saves,
                        task=inputs.head.task, generation=generation_manifest(inputs, settings))
    return write_artifact(inputs.strategy, outcome.model, folder, manifest)


def generation_manifest(inputs: StrategyInputs, settings: Settings) -> dict | None:
    """What a generating version needs beyond its weights: the prompt it was trained (or is
    prompted) with, the decoding cap, and the precision its outputs were scored in (serving
    generates in it too)."""
    if not inputs.head.generates:
        return None
    return {"system_prompt": inputs.prompt.system_prompt, "instruction": inputs.prompt.instruction,
            "max_new_tokens": settings.generation.max_new_tokens,
            "precision": inputs.generation_precision}


def ownership_metrics(inputs: StrategyInputs, outcome: Outcome, settings: Settings, folder: Path) -> dict[str, float]:
    """How `adaptflow serve` holds versions like this one (on one shared base or a copy each;
    requests for several versions in one forward pass or not), then what owning it costs for the
    deployment under params `cost:` (tasks/evaluation/ownership.py), from this run's figures."""
    strategy = inputs.strategy
    shares = strategy.saves == "adapter" and strategy.sharing is not None
    footprint = {"tenant_shares_base": float(shares),
                 # serving mixes versions in one pass for classification only (tasks/serving/pool.py)
                 "tenant_mixes": float(shares and not inputs.head.generates and strategy.mixes(folder, outcome.params))}
    if shares:   # what switching between (or mixing) versions on the shared base costs per batch
        footprint |= switching_metrics(folder, inputs.base, inputs.splits["test"], inputs.pad_id, inputs.head.generates)
    cost = settings.cost
    measured = Measured.from_metrics(inputs.name, outcome.metrics | footprint, cost.tokens_per_request)
    return footprint | (own(measured, cost).metrics() if measured else {})


def data_key(ctx: RunContext) -> str:
    """The data a study tunes on: the train and validation splits' DVC hashes."""
    return f"{ctx.data.split_hashes['train']}/{ctx.data.split_hashes['validation']}"


def run_strategy(ctx: RunContext, name: str) -> StrategyResult | None:
    """One strategy, computed and recorded in its own MLflow child run of the flow's parent run
    (tuned first when tune.enabled: its trials are runs nested under it). Under several processes (train.processes) every process computes, training in step with
    the others, and only the main one records and returns the result (the others None)."""
    inputs = prepare_inputs(ctx.settings, ctx.base, ctx.frames, name)
    if not is_main_process(inputs.hardware):
        compute(inputs, ctx.settings)
        return None
    with record.strategy_run(ctx, inputs) as run_id:
        tuned = None
        if ctx.settings.tune.enabled and inputs.strategy.trains:
            from tasks.training.tuning import log_tuned, tune_strategy

            tuned = tune_strategy(inputs, ctx.settings, data_key(ctx), ctx.experiment_id)
            log_tuned(tuned)
            inputs = replace(inputs, params=tuned.params, trained=tuned.trained)
        outcome = compute(inputs, ctx.settings)
        with tempfile.TemporaryDirectory(prefix=f"adaptflow-{name}-") as tmp:
            folder = Path(tmp) / name
            outcome.metrics["artifact_bytes"] = float(save_outcome(inputs, outcome, ctx.settings, folder))
            outcome.metrics.update(ownership_metrics(inputs, outcome, ctx.settings, folder))   # Outcome is frozen
            model_uri = record.log_outcome(inputs, outcome, folder)
    return StrategyResult(strategy=name, run_id=run_id, model_uri=model_uri, saves=inputs.strategy.saves,
                          metrics=outcome.metrics, base=inputs.base, params=params_dict(outcome.params))


def _classification_seed_scores(inputs: StrategyInputs, settings: Settings) -> dict[str, float]:
    return fit(inputs, settings.train, f"{inputs.name} (seed {settings.train.seed})").metrics


register_part("classification", STAGE, TrainingPart(
    prepare=prepare_classification_inputs, compute=compute_classification, seed_scores=_classification_seed_scores))
