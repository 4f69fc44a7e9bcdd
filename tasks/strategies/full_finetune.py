"""Full fine-tuning: every weight of the base and a new classification head train."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tasks.models.loading import load_classifier
from tasks.strategies.registry import Strategy, TrainableParams, register


@dataclass(frozen=True)
class FullFinetuneParams(TrainableParams):
    learning_rate: float = 5e-5


def build(base_dir: Path, labels: list[str], params: FullFinetuneParams) -> nn.Module:
    return load_classifier(base_dir, labels)


def save(model: nn.Module, out_dir: Path) -> None:
    model.save_pretrained(out_dir, safe_serialization=True)


def load(base_dir: Path, saved_dir: Path, labels: list[str], params: FullFinetuneParams) -> nn.Module:
    return load_classifier(saved_dir, labels).eval()


register(Strategy(
    name="full_finetune",
    summary="all weights train; saves the whole model",
    params_cls=FullFinetuneParams, trains=True, saves="full_model",
    build=build, save=save, load=load,
))
