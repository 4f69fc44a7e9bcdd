"""Hybrid: LoRA and prompt tuning trained together as one adapter (`adapters` ConfigUnion;
PEFT cannot put two adapter types on one model)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tasks.strategies._adapters_lib import build_with_adapter
from tasks.strategies._trained_weights import load_trained, save_trained
from tasks.strategies.registry import Strategy, TrainableParams, register


@dataclass(frozen=True)
class LoraPromptParams(TrainableParams):
    learning_rate: float = 1e-3
    r: int = 8
    alpha: int = 16
    prompt_length: int = 10

    def __post_init__(self):
        super().__post_init__()
        if self.r <= 0 or self.alpha <= 0 or self.prompt_length <= 0:
            raise ValueError("r, alpha and prompt_length must be positive")


def adapter_config(params: LoraPromptParams):
    from adapters import ConfigUnion, LoRAConfig, PromptTuningConfig

    return ConfigUnion(LoRAConfig(r=params.r, alpha=params.alpha),
                       PromptTuningConfig(prompt_length=params.prompt_length))


def build(base_dir: Path, labels: list[str], params: LoraPromptParams) -> nn.Module:
    return build_with_adapter(base_dir, labels, adapter_config(params))


def load(base_dir: Path, saved_dir: Path, labels: list[str], params: LoraPromptParams) -> nn.Module:
    return load_trained(build(base_dir, labels, params), saved_dir)


register(Strategy(
    name="lora_prompt",
    summary="hybrid: LoRA + prompt tuning as one `adapters` ConfigUnion + trained head; saves adapter only",
    params_cls=LoraPromptParams, trains=True, saves="adapter",
    build=build, save=save_trained, load=load, library="adapters",
))
