"""Run one strategy end to end: build, train (if it trains), evaluate on the test split,
save, and log it all to its own MLflow child run."""
from __future__ import annotations

import tempfile
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch

from tasks.base_model import BaseModel, load_base, load_tokenizer
from tasks.config import Settings, TrainSettings
from tasks.data_version import DataVersion
from tasks.encoding import Encoded, encode
from tasks.evaluation import predict_proba
from tasks.cost import PeakRSS, measure_speed
from tasks.measurements import forgetting_metrics, merged_speed_metrics
from tasks.metrics import accuracy, macro_f1
from tasks.report import draw_reliability, pyplot
from tasks.stats import bootstrap_ci, overfitting, per_class, reliability
from tasks.packaged_model import Manifest, params_dict, signature
from tasks.strategies import registry
from tasks.training import LoopConfig, TrainResult, count_parameters, seed_everything, train

# MLflow runs this file to build the pyfunc (models from code); it is not imported here.
PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_entry.py")

# The metric names every strategy logs, so any two runs compare (trained strategies add
# train_examples_per_s, overfit_flag and the loss curves; prompting ones prompt_variant_std).
METRICS = ("test_accuracy", "test_macro_f1", "trainable_params", "trainable_fraction",
           "artifact_bytes", "train_seconds", "test_accuracy_ci_low", "test_accuracy_ci_high",
           "test_macro_f1_ci_low", "test_macro_f1_ci_high", "test_ece", "latency_ms_p50",
           "latency_ms_p95", "throughput_examples_per_s", "peak_rss_mb")


@dataclass(frozen=True)
class StrategyResult:
    strategy: str
    run_id: str
    model_uri: str
    saves: str
    metrics: dict[str, float]
    base: BaseModel              # the base it was built on (a strategy may name its own)
    params: dict                 # the effective strategy params (the chosen prompt variant)


def encode_splits(tokenizer, frames: dict[str, pd.DataFrame], labels: list[str], max_length: int,
                  max_train: int, max_eval: int, seed: int) -> dict[str, Encoded]:
    ids = {label: i for i, label in enumerate(labels)}
    limits = {"train": max_train, "validation": max_eval, "test": max_eval}
    return {split: encode(tokenizer, frame["text"].tolist(), frame["label"].map(ids).to_numpy(),
                          max_length).subset(limits[split], seed)
            for split, frame in frames.items()}


def tightest_limit(*limits: int) -> int:
    """The smallest positive limit; 0 (no limit) when none is set."""
    return min((x for x in limits if x > 0), default=0)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def log_training_input(train: pd.DataFrame, data: DataVersion) -> None:
    """The train split as an MLflow dataset whose digest is its DVC md5."""
    with warnings.catch_warnings():
        # MLflow registers two local-file dataset sources with one name and warns that the
        # path is ambiguous between them; either resolves the same file.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        dataset = mlflow.data.from_pandas(train, source=str(data.split_files["train"]), name="train",
                                          targets="label", digest=data.split_hashes["train"][:8])
    mlflow.log_input(dataset, context="training")


def _log_curves(result: TrainResult) -> None:
    for step, loss in result.train_loss:
        mlflow.log_metric("train_loss", loss, step=step)
    for step, loss in result.val_loss:
        mlflow.log_metric("val_loss", loss, step=step)
    mlflow.log_metrics({"train_steps": result.steps, "best_step": result.best_step,
                        "stopped_early": float(result.stopped_early),
                        "resumed_from_step": result.resumed_from_step})   # > 0: went on from a checkpoint


def run_strategy(name: str, settings: Settings, base: BaseModel, frames: dict[str, pd.DataFrame],
                 data: DataVersion, experiment_id: str, parent_run_id: str, run_tags: dict[str, str]
                 ) -> StrategyResult:
    strategy = registry.get(name)
    params = strategy.parse_params(settings.strategy_params.get(name, {}))
    labels, cfg = settings.validation.labels, settings.train
    torch.set_num_threads(cfg.threads)
    # A strategy may name its own base (few_shot prompts a causal LM whatever model.base is).
    if getattr(params, "base", None) and params.base != base.name:
        base = load_base(params.base, settings.root)
    tokenizer = load_tokenizer(base.path)
    # A strategy may score fewer test examples (a prompted LM is slow); always the same subset.
    max_eval = tightest_limit(cfg.max_eval_examples, getattr(params, "max_test_examples", 0))
    splits = encode_splits(tokenizer, frames, labels, settings.model.max_length,
                           cfg.max_train_examples, max_eval, cfg.seed)
    run_tags = {**run_tags, "base.name": base.name, "base.fingerprint": base.fingerprint}

    with mlflow.start_run(experiment_id=experiment_id, run_name=name, parent_run_id=parent_run_id,
                          tags={**run_tags, "strategy": name, "saves": strategy.saves}) as run:
        mlflow.log_params({f"strategy.{k}": v for k, v in params_dict(params).items()})
        mlflow.log_params({f"train.{k}": v for k, v in asdict(cfg).items()}
                          | {"model.base": base.name, "model.max_length": settings.model.max_length})
        log_training_input(frames["train"], data)

        seed_everything(cfg.seed)
        with PeakRSS() as rss:
            if strategy.variants is None:
                model, metrics, train_seconds, probs = _build_and_train(
                    strategy, params, base, labels, splits, cfg, tokenizer.pad_token_id, name)
            else:
                model, params, metrics, probs, variant_preds = _evaluate_variants(
                    strategy, params, base, labels, splits, frames["train"], tokenizer.pad_token_id)
                train_seconds = 0.0
            metrics |= quality_details(probs, splits["test"].labels, labels, cfg.seed)
            if strategy.variants is not None:   # the intervals belong to the mean over variants
                metrics |= variant_mean_intervals(splits["test"].labels, variant_preds, len(labels), cfg.seed)
            speed = measure_speed(model, splits["test"], tokenizer.pad_token_id)
        metrics |= asdict(speed) | {"peak_rss_mb": rss.peak_mb, "test_examples": float(len(splits["test"]))}
        # After the peak-memory window: the probe loads a second copy of the base.
        ev = settings.evaluation
        metrics |= forgetting_metrics(model, strategy.trains, base, labels, tokenizer, ev, cfg.seed)
        if strategy.merge is not None and ev.merged_latency:
            metrics |= merged_speed_metrics(model, strategy.merge, splits["test"], tokenizer.pad_token_id)
        if name in ev.learning_curve_strategies:
            _learning_curve(strategy, params, base, labels, splits, cfg, tokenizer.pad_token_id, name,
                            ev.learning_curve_sizes, metrics["test_accuracy"])

        with tempfile.TemporaryDirectory(prefix=f"adaptflow-{name}-") as tmp:
            folder = Path(tmp) / name
            folder.mkdir()
            strategy.save(model, folder)
            artifact_bytes = folder_bytes(folder)
            Manifest(strategy=name, params=params_dict(params), labels=labels,
                     max_length=settings.model.max_length, base_name=base.name,
                     base_fingerprint=base.fingerprint, saves=strategy.saves).write(folder)
            metrics |= {"artifact_bytes": float(artifact_bytes), "train_seconds": train_seconds}
            mlflow.log_metrics(metrics)
            if strategy.saves == "config_only":   # the prompt itself, visible on the run page
                mlflow.log_artifacts(str(folder), "prompt")
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(PYFUNC_ENTRY),
                artifacts={"strategy": str(folder)}, signature=signature(),
                pip_requirements=_requirements(),
            )
    return StrategyResult(strategy=name, run_id=run.info.run_id, model_uri=info.model_uri,
                          saves=strategy.saves, metrics=metrics, base=base, params=params_dict(params))


def _quality(model, data: Encoded, labels: list[str], pad_id: int) -> dict:
    probs = predict_proba(model, data, pad_id)
    y_pred = probs.argmax(1)
    return {"accuracy": accuracy(data.labels, y_pred),
            "macro_f1": macro_f1(data.labels, y_pred, len(labels)), "probs": probs}


def _size(model) -> dict[str, float]:
    trainable, total = count_parameters(model)
    return {"trainable_params": float(trainable), "trainable_fraction": trainable / total}


def loop_config(params, cfg: TrainSettings, **override) -> LoopConfig:
    """The training loop's settings: train.* with the strategy's own epochs, learning rate and
    batch grouping (each strategy's params may override train.epochs / train.group_by_length)."""
    return replace(LoopConfig(
        learning_rate=params.learning_rate, epochs=params.epochs or cfg.epochs, batch_size=cfg.batch_size,
        eval_every=cfg.eval_every, patience=cfg.patience, seed=cfg.seed,
        group_by_length=cfg.group_by_length if params.group_by_length is None else params.group_by_length), **override)


def _build_and_train(strategy, params, base: BaseModel, labels, splits, cfg, pad_id: int, name: str,
                     log_curves: bool = True):
    model = strategy.build(base.path, labels, params)
    size = _size(model)
    train_seconds = 0.0
    if strategy.trains:
        result = train(model, splits["train"], splits["validation"], loop_config(params, cfg), pad_id, desc=name)
        train_seconds = result.train_seconds
        if log_curves:
            _log_curves(result)
        size |= {"train_examples_per_s": result.examples_seen / max(result.train_seconds, 1e-9),
                 "overfit_flag": float(overfitting(result.train_loss, result.val_loss))}
    test = _quality(model, splits["test"], labels, pad_id)
    return model, {"test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"], **size}, \
        train_seconds, test["probs"]


def learning_curve_points(strategy, params, base: BaseModel, labels, splits, cfg, pad_id: int, name: str,
                          sizes: list[int]) -> list[tuple[int, float]]:
    """Data efficiency: (n, test accuracy) of the same recipe on n training examples, for each
    size below the run's own. The sets are nested (the first n of one seeded permutation), and
    seed, hyperparameters, validation split (early stopping) and test split are the main run's."""
    train_set = splits["train"]
    order = np.random.default_rng(cfg.seed).permutation(len(train_set))
    points = []
    for n in sorted(x for x in set(sizes) if x < len(train_set)):
        seed_everything(cfg.seed)
        subset = {**splits, "train": train_set.select(np.sort(order[:n]))}
        _, point, _, _ = _build_and_train(strategy, params, base, labels, subset, cfg, pad_id,
                                          f"{name} (n={n})", log_curves=False)
        points.append((n, point["test_accuracy"]))
    return points


def _learning_curve(strategy, params, base: BaseModel, labels, splits, cfg, pad_id: int, name: str,
                    sizes: list[int], full_accuracy: float) -> None:
    """The curve logged as learning_curve_accuracy with step = n; the run's own result is the last point."""
    for n, accuracy_n in learning_curve_points(strategy, params, base, labels, splits, cfg, pad_id, name, sizes):
        mlflow.log_metric("learning_curve_accuracy", accuracy_n, step=n)
    mlflow.log_metric("learning_curve_accuracy", full_accuracy, step=len(splits["train"]))


def score_variants(strategy, params, base: BaseModel, labels, splits, train: pd.DataFrame, pad_id: int):
    """Every prompt variant on validation and test: (rows, best, test predictions per variant),
    best = (validation accuracy, index, model, variant params, test probabilities) of the
    variant best on validation, so the choice never looks at test."""
    rows, best, preds = [], None, []
    for i, variant in enumerate(strategy.variants(params, train, labels)):
        model = strategy.build(base.path, labels, variant)
        val, test = (_quality(model, splits[s], labels, pad_id) for s in ("validation", "test"))
        probs = test.pop("probs")
        val.pop("probs")
        preds.append(probs.argmax(1))
        rows.append({"variant": i, "params": params_dict(variant), "validation": val, "test": test})
        if best is None or val["accuracy"] > best[0]:
            best = (val["accuracy"], i, model, variant, probs)
    return rows, best, preds


def _evaluate_variants(strategy, params, base: BaseModel, labels, splits, train: pd.DataFrame, pad_id: int):
    """Every prompt variant, logged. Test metrics are the mean over variants (spread:
    prompt_variant_std, sample std); the variant best on validation is returned for saving."""
    rows, best, preds = score_variants(strategy, params, base, labels, splits, train, pad_id)
    for r in rows:
        mlflow.log_metric("variant_test_accuracy", r["test"]["accuracy"], step=r["variant"])
    accs = np.array([r["test"]["accuracy"] for r in rows])
    mlflow.log_dict({"chosen_variant": best[1], "variants": rows}, "prompt_variants.json")
    metrics = {"test_accuracy": float(accs.mean()),
               "test_macro_f1": float(np.mean([r["test"]["macro_f1"] for r in rows])),
               "prompt_variant_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
               "chosen_variant": float(best[1]), **_size(best[2])}
    return best[2], best[3], metrics, best[4], np.stack(preds, axis=1)


def variant_mean_intervals(y_true: np.ndarray, preds: np.ndarray, num_classes: int, seed: int) -> dict[str, float]:
    """Bootstrap 95 % intervals of the mean over prompt variants (preds: examples x variants),
    resampling test examples once for all variants, so each interval brackets the logged
    test_accuracy / test_macro_f1 (ECE, the reliability diagram and the paired test describe
    the saved variant)."""
    mean_of = lambda metric: (lambda t, p: float(np.mean([metric(t, p[:, v]) for v in range(p.shape[1])])))
    acc = bootstrap_ci(y_true, preds, mean_of(accuracy), seed=seed)
    f1 = bootstrap_ci(y_true, preds, mean_of(lambda t, p: macro_f1(t, p, num_classes)), seed=seed)
    return {"test_accuracy_ci_low": acc[0], "test_accuracy_ci_high": acc[1],
            "test_macro_f1_ci_low": f1[0], "test_macro_f1_ci_high": f1[1]}


def quality_details(probs: np.ndarray, y_true: np.ndarray, labels: list[str], seed: int) -> dict[str, float]:
    """Intervals, calibration and per-class figures of the saved model on the test split; the
    confusion matrix, reliability diagram and per-example predictions go to the run as artifacts."""
    y_pred = probs.argmax(1)
    k = len(labels)
    acc_ci = bootstrap_ci(y_true, y_pred, accuracy, seed=seed)
    f1_ci = bootstrap_ci(y_true, y_pred, lambda t, p: macro_f1(t, p, k), seed=seed)
    rel = reliability(probs, y_true, n_bins=15)
    precision, recall, cm = per_class(y_true, y_pred, k)
    mlflow.log_dict({"labels": labels, "matrix_true_by_predicted": cm.tolist()}, "confusion_matrix.json")
    mlflow.log_dict({"y_true": y_true.tolist(), "y_pred": y_pred.tolist(),
                     "confidence": probs.max(1).round(5).tolist()}, "test_predictions.json")
    mlflow.log_dict(asdict(rel), "reliability.json")
    figure = reliability_figure(rel)
    mlflow.log_figure(figure, "reliability_diagram.png")
    pyplot().close(figure)
    out = {"test_accuracy_ci_low": acc_ci[0], "test_accuracy_ci_high": acc_ci[1],
           "test_macro_f1_ci_low": f1_ci[0], "test_macro_f1_ci_high": f1_ci[1], "test_ece": rel.ece}
    for label, p, r in zip(labels, precision, recall):
        out |= {f"test_precision_{label}": p, f"test_recall_{label}": r}
    return out


def reliability_figure(rel):
    fig, ax = pyplot().subplots(figsize=(3.6, 3.4))
    draw_reliability(ax, asdict(rel), f"ECE {rel.ece:.3f} (15 bins)")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    fig.tight_layout()
    return fig


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in
            ("torch", "transformers", "peft", "mlflow", "pandas", "adaptflow")]
