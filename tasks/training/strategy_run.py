"""What one strategy run starts from (`StrategyInputs`) and what computing it gave
(`Fitted`, `Outcome`), before anything is logged: shared by run.py, which computes, and
record.py, which logs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
from torch import nn

from tasks.evaluation.cost import size_metrics
from tasks.models.base import ResolvedBase
from tasks.models.encoding import Encoded
from tasks.models.heads import Head
from tasks.models.prompts import PromptFormat
from tasks.strategies.registry import Strategy
from tasks.training.hardware import Hardware
from tasks.training.loop import TrainResult
from tasks.tasktypes import DEFAULT, part


@dataclass(frozen=True)
class Trained:
    """A model built with one set of params and (if the strategy trains) trained."""
    model: nn.Module
    training: TrainResult | None
    metrics: dict[str, float]    # size; trained: examples/s, overfit flag


@dataclass(frozen=True, kw_only=True)
class TrainingPart:
    """What training does for one task type, registered once per type (`register_part(task,
    STAGE, ...)`: run.py for classification, generation.py for generation)."""
    # (settings, base, frames, strategy name) -> StrategyInputs: the encoded splits
    prepare: Callable
    # (inputs, settings) -> Outcome: train (or score prompt variants), then every measurement
    compute: Callable
    # (inputs with another seed, settings with it) -> scores including the task type's seed_keys
    seed_scores: Callable


STAGE = "training"


def training_part(task: str) -> TrainingPart:
    return part(task, STAGE)


@dataclass(frozen=True, kw_only=True)
class StrategyInputs:
    """What one strategy run starts from: the strategy, its params, its base and the encoded splits."""
    name: str
    strategy: Strategy
    params: Any                  # the strategy's params dataclass, validated
    base: ResolvedBase           # model.base, or the strategy's own base (few_shot prompts a causal LM)
    tokenizer: Any
    labels: list[str]
    splits: dict[str, Encoded]   # train / validation / test, limited as train.max_*_examples say
    train_frame: pd.DataFrame    # the train split's texts (prompting strategies draw demonstrations)
    hardware: Hardware           # where it trains: device, precision, processes
    head: Head = Head(DEFAULT)            # the task type, and its labels (tasks/models/heads.py)
    prompt: PromptFormat | None = None    # generation: how inputs become prompts
    trained: Trained | None = None        # the tuner's best trial, already trained with `params`
    generation_precision: str = "fp32"    # generation: the weights' while generating (generation.precision resolved)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id


@dataclass(frozen=True)
class Fitted:
    """One model built with the strategy's params, trained if the strategy trains, scored on test."""
    model: nn.Module
    metrics: dict[str, float]    # test accuracy and macro-F1, size; trained: examples/s, overfit flag
    training: TrainResult | None
    test_probs: np.ndarray
    val_probs: np.ndarray        # what the policy's validation figures (budgets) are computed on


@dataclass(frozen=True)
class VariantScores:
    rows: list[dict]             # per variant: index, params, validation and test accuracy / macro-F1
    chosen: int                  # the variant best on validation
    model: nn.Module             # the chosen variant's model
    params: Any                  # the chosen variant's params
    test_probs: np.ndarray       # the chosen variant's test probabilities
    test_preds: np.ndarray       # examples x variants: every variant's test predictions
    val_probs: np.ndarray        # the chosen variant's validation probabilities

    def metrics(self) -> dict[str, float]:
        """Test metrics as the mean over variants; prompt_variant_std is their sample std."""
        accs = np.array([r["test"]["accuracy"] for r in self.rows])
        chosen = self.rows[self.chosen]["validation"]   # selection reads the saved variant's validation score
        return {"val_accuracy": chosen["accuracy"], "val_macro_f1": chosen["macro_f1"], "val_ece": chosen["ece"],
                "test_accuracy": float(accs.mean()),
                "test_macro_f1": float(np.mean([r["test"]["macro_f1"] for r in self.rows])),
                "prompt_variant_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
                "chosen_variant": float(self.chosen), **size_metrics(self.model)}


@dataclass(frozen=True)
class Outcome:
    """Everything `compute` measured, before anything is logged."""
    model: nn.Module             # the model to save
    params: Any                  # its params (a prompting strategy's chosen variant)
    metrics: dict[str, float]    # the run's metrics (the record's METRICS and more)
    details: Any                 # QualityDetails (classification) or GenerationDetails: the saved model's test outputs
    training: TrainResult | None = None
    variants: VariantScores | None = None
    learning_curve: list[tuple[int, float]] | None = None   # (train examples, test accuracy)


@dataclass(frozen=True)
class GenerationDetails:
    """The saved model's test outputs beside their inputs and references, with per-example scores
    (the report's side-by-side sample and the paired tests read them)."""
    sources: list[str]
    references: list[str]
    outputs: list[str]
    rougeL: np.ndarray
    chrf: np.ndarray
