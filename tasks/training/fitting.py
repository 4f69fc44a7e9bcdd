"""Build a strategy's model and train it on the train split (early stopping on validation loss):
the one step the final training, each tuning trial and each extra seed share. Nothing here
reads the test split."""
from __future__ import annotations

import math
from typing import Callable

from tasks.config import TrainSettings
from tasks.evaluation.cost import size_metrics
from tasks.evaluation.statistics import overfitting
from tasks.training.loop import TrainResult, seed_everything, train
from tasks.training.loop_settings import loop_config
from tasks.training.strategy_run import StrategyInputs, Trained


def build_and_train(inputs: StrategyInputs, cfg: TrainSettings, desc: str,
                    on_check: Callable[[int, float], None] | None = None) -> Trained:
    """The model with `inputs.params`, trained when the strategy trains; the tuner's best trial
    (`inputs.trained`) is used as it is instead of training the same recipe again."""
    if inputs.trained is not None:
        return inputs.trained
    seed_everything(cfg.seed)   # the head and adapter start the same whatever ran before (trial 0 = untuned)
    model = inputs.strategy.build(inputs.base.path, inputs.head, inputs.params)
    metrics, result = size_metrics(model), None
    if inputs.strategy.trains:
        result = train(model, inputs.splits["train"], inputs.splits["validation"],
                       loop_config(inputs.params, cfg, inputs.hardware,
                                   pack=cfg.pack_generation and inputs.strategy.packs),
                       inputs.pad_id, desc=desc, on_check=on_check)
        metrics |= {"train_examples_per_s": result.examples_seen / max(result.train_seconds, 1e-9),
                    "overfit_flag": float(overfitting(result.train_loss, result.val_loss))}
    return Trained(model, result, metrics)


def best_val_loss(trained: Trained) -> float:
    """The validation loss of the weights the loop kept (the lowest finite one it saw)."""
    if trained.training is None or not trained.training.val_loss:
        raise ValueError("this model did not train: it has no validation loss")
    finite = [loss for _, loss in trained.training.val_loss if math.isfinite(loss)]
    if not finite:
        raise ValueError("the validation loss was never finite (the training diverged)")
    return min(finite)


def kept_val_loss(training: TrainResult | None, precision: str) -> float | None:
    """The validation loss of the weights the loop kept and restored (its check at best_step),
    or None: no training, no kept check (a loss never finite), that check not in the curve, or
    checks in another precision than `precision` (accelerate's names), the one asked for."""
    if training is None or not training.best_step or training.precision != precision:
        return None
    kept = dict(training.val_loss).get(training.best_step)
    return kept if kept is not None and math.isfinite(kept) else None
