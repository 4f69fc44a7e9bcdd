"""Run one strategy end to end: build, train (if it trains), evaluate on the test split,
save, and log it all to its own MLflow child run."""
from __future__ import annotations

import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch

from tasks.base_model import BaseModel, load_base, load_tokenizer
from tasks.config import Settings
from tasks.data_version import DataVersion
from tasks.encoding import Encoded, encode
from tasks.evaluation import predict_proba
from tasks.metrics import accuracy, macro_f1
from tasks.packaged_model import Manifest, params_dict, signature
from tasks.strategies import registry
from tasks.training import LoopConfig, TrainResult, count_parameters, seed_everything, train

# MLflow runs this file to build the pyfunc (models from code); it is not imported here.
PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_entry.py")

# The metric names every strategy logs, so any two runs compare.
METRICS = ("test_accuracy", "test_macro_f1", "trainable_params", "trainable_fraction",
           "artifact_bytes", "train_seconds")


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
                        "stopped_early": float(result.stopped_early)})


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
        if strategy.variants is None:
            model, metrics, train_seconds = _build_and_train(strategy, params, base, labels, splits,
                                                             cfg, tokenizer.pad_token_id, name)
        else:
            model, params, metrics = _evaluate_variants(strategy, params, base, labels, splits,
                                                        frames["train"], tokenizer.pad_token_id)
            train_seconds = 0.0

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


def _quality(model, data: Encoded, labels: list[str], pad_id: int) -> dict[str, float]:
    y_pred = predict_proba(model, data, pad_id).argmax(1)
    return {"accuracy": accuracy(data.labels, y_pred),
            "macro_f1": macro_f1(data.labels, y_pred, len(labels))}


def _size(model) -> dict[str, float]:
    trainable, total = count_parameters(model)
    return {"trainable_params": float(trainable), "trainable_fraction": trainable / total}


def _build_and_train(strategy, params, base: BaseModel, labels, splits, cfg, pad_id: int, name: str):
    model = strategy.build(base.path, labels, params)
    size = _size(model)
    train_seconds = 0.0
    if strategy.trains:
        loop = LoopConfig(learning_rate=params.learning_rate, epochs=params.epochs or cfg.epochs,
                          batch_size=cfg.batch_size, eval_every=cfg.eval_every,
                          patience=cfg.patience, seed=cfg.seed)
        result = train(model, splits["train"], splits["validation"], loop, pad_id, desc=name)
        train_seconds = result.train_seconds
        _log_curves(result)
    test = _quality(model, splits["test"], labels, pad_id)
    return model, {"test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"], **size}, train_seconds


def _evaluate_variants(strategy, params, base: BaseModel, labels, splits, train: pd.DataFrame, pad_id: int):
    """Every prompt variant on validation and test. Test metrics are the mean over variants
    (spread: prompt_variant_std, sample std); the variant best on validation is returned for
    saving, so the choice never looks at test."""
    rows, best = [], None
    for i, variant in enumerate(strategy.variants(params, train, labels)):
        model = strategy.build(base.path, labels, variant)
        val, test = (_quality(model, splits[s], labels, pad_id) for s in ("validation", "test"))
        rows.append({"variant": i, "params": params_dict(variant), "validation": val, "test": test})
        mlflow.log_metric("variant_test_accuracy", test["accuracy"], step=i)
        if best is None or val["accuracy"] > best[0]:
            best = (val["accuracy"], i, model, variant)
    accs = np.array([r["test"]["accuracy"] for r in rows])
    mlflow.log_dict({"chosen_variant": best[1], "variants": rows}, "prompt_variants.json")
    metrics = {"test_accuracy": float(accs.mean()),
               "test_macro_f1": float(np.mean([r["test"]["macro_f1"] for r in rows])),
               "prompt_variant_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
               "chosen_variant": float(best[1]), **_size(best[2])}
    return best[2], best[3], metrics


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in
            ("torch", "transformers", "peft", "mlflow", "pandas", "adaptflow")]
