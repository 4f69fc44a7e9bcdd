"""Hybrid: LoRA and prompt tuning trained together as one adapter (`adapters` ConfigUnion;
PEFT cannot put two adapter types on one model)."""
from __future__ import annotations

from dataclasses import dataclass

from tasks.strategies._adapters_lib import adapters_strategy
from tasks.strategies.registry import TrainableParams, register


@dataclass(frozen=True)
class LoraPromptParams(TrainableParams):
    learning_rate: float = 1e-3
    r: int = 8
    alpha: int = 16
    prompt_length: int = 10
    POSITIVE = ("r", "alpha", "prompt_length")


def adapter_config(params: LoraPromptParams):
    from adapters import ConfigUnion, LoRAConfig, PromptTuningConfig

    return ConfigUnion(LoRAConfig(r=params.r, alpha=params.alpha),
                       PromptTuningConfig(prompt_length=params.prompt_length))


register(adapters_strategy(
    "lora_prompt", "hybrid: LoRA + prompt tuning as one `adapters` ConfigUnion + trained head; saves adapter only",
    LoraPromptParams, adapter_config))
