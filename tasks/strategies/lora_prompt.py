"""Hybrid: LoRA and prompt tuning trained together as one adapter (`adapters` ConfigUnion;
PEFT cannot put two adapter types on one model)."""
from __future__ import annotations

from dataclasses import dataclass, field

from tasks.strategies._adapters_lib import adapters_strategy
from tasks.strategies.registry import TrainableParams, learning_rate_field, register
from tasks.strategies.search import Choice, Range


@dataclass(frozen=True)
class LoraPromptParams(TrainableParams):
    learning_rate: float = learning_rate_field(1e-3)
    r: int = field(default=8, metadata={"help": "rank of each LoRA update"})
    alpha: int = field(default=16, metadata={"help": "LoRA scaling: alpha / r"})
    prompt_length: int = field(default=10, metadata={"help": "trainable prompt tokens in front of the input"})
    POSITIVE = ("r", "alpha", "prompt_length")
    SEARCH = {"learning_rate": Range(2e-4, 5e-3, log=True), "r": Choice((4, 8, 16))}


def adapter_config(params: LoraPromptParams):
    from adapters import ConfigUnion, LoRAConfig, PromptTuningConfig

    return ConfigUnion(LoRAConfig(r=params.r, alpha=params.alpha),
                       PromptTuningConfig(prompt_length=params.prompt_length))


register(adapters_strategy(
    "lora_prompt", "hybrid: LoRA + prompt tuning as one `adapters` ConfigUnion + trained head; saves adapter only",
    LoraPromptParams, adapter_config))
