"""Full fine-tuning: every weight of the base trains, with a new classification head (or, for
generation, the causal LM's own head)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.models.heads import Head
from tasks.strategies.registry import Strategy, TrainableParams, learning_rate_field, register
from tasks.strategies.search import Range

if TYPE_CHECKING:   # annotations only: importing torch costs 1 s, and settings do not need it
    from torch import nn


@dataclass(frozen=True)
class FullFinetuneParams(TrainableParams):
    learning_rate: float = learning_rate_field(5e-5)
    SEARCH = {"learning_rate": Range(1e-5, 2e-4, log=True)}


def build(base_dir: Path, head: Head, params: FullFinetuneParams) -> nn.Module:
    return head.load(base_dir)


def save(model: nn.Module, out_dir: Path) -> None:
    model.save_pretrained(out_dir, safe_serialization=True)


def load(base_dir: Path, saved_dir: Path, head: Head, params: FullFinetuneParams) -> nn.Module:
    return head.load(saved_dir).eval()


register(Strategy(
    name="full_finetune",
    summary="all weights train; saves the whole model",
    params_cls=FullFinetuneParams, trains=True, saves="full_model",
    build=build, save=save, load=load, tasks=("classification", "generation"), packs=True,
))
