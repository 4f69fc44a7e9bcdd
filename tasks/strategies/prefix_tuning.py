"""Prefix tuning (PEFT): trainable key/value prefixes in every attention layer."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tasks.models.heads import Head
from tasks.strategies._peft import peft_strategy, task_type
from tasks.strategies.registry import TrainableParams, learning_rate_field, register
from tasks.strategies.search import Choice, Range


@dataclass(frozen=True)
class PrefixTuningParams(TrainableParams):
    learning_rate: float = learning_rate_field(1e-2)
    num_virtual_tokens: int = field(default=10, metadata={
        "help": "prefix length: key/value positions added in every attention layer (1..100)"})
    prefix_projection: bool = field(default=False, metadata={
        "help": "reparameterise the prefix through an MLP while training (stabler); false keeps it direct"})
    # The MLP reparameterisation is what the prefix-tuning paper needed for stable training.
    SEARCH = {"learning_rate": Range(1e-3, 1e-1, log=True), "num_virtual_tokens": Choice((10, 20)),
              "prefix_projection": Choice((False, True)), "epochs": Choice((2, 3))}

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.num_virtual_tokens <= 100:
            raise ValueError(f"num_virtual_tokens must be in 1..100, got {self.num_virtual_tokens}")


def peft_config(base_dir: Path, params: PrefixTuningParams, head: Head):
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(task_type=task_type(head), num_virtual_tokens=params.num_virtual_tokens,
                              prefix_projection=params.prefix_projection)


register(peft_strategy("prefix_tuning", "PEFT prefix tuning (per-layer key/value prefixes) (+ trained head for classification); saves adapter only",
                       PrefixTuningParams, peft_config, tasks=("classification", "generation")))
