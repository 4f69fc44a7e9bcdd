"""UniPELT (`adapters`): a gated union of LoRA, prefix tuning and a bottleneck adapter; each
gate learns how much its method contributes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tasks.strategies._adapters_lib import build_with_adapter
from tasks.strategies._trained_weights import load_trained, save_trained
from tasks.strategies.registry import Strategy, TrainableParams, register


@dataclass(frozen=True)
class UnipeltParams(TrainableParams):
    learning_rate: float = 1e-3
    lora_r: int = 8
    prefix_length: int = 10
    reduction_factor: int = 16

    def __post_init__(self):
        super().__post_init__()
        if min(self.lora_r, self.prefix_length, self.reduction_factor) <= 0:
            raise ValueError("lora_r, prefix_length and reduction_factor must be positive")


def adapter_config(params: UnipeltParams):
    from adapters import LoRAConfig, PrefixTuningConfig, SeqBnConfig, UniPELTConfig

    return UniPELTConfig(prefix_tuning=PrefixTuningConfig(prefix_length=params.prefix_length),
                         adapter=SeqBnConfig(reduction_factor=params.reduction_factor),
                         lora=LoRAConfig(r=params.lora_r, alpha=2))


def build(base_dir: Path, labels: list[str], params: UnipeltParams) -> nn.Module:
    return build_with_adapter(base_dir, labels, adapter_config(params))


def load(base_dir: Path, saved_dir: Path, labels: list[str], params: UnipeltParams) -> nn.Module:
    return load_trained(build(base_dir, labels, params), saved_dir)


register(Strategy(
    name="unipelt",
    summary="UniPELT: gated LoRA + prefix + bottleneck (`adapters`) + trained head; saves adapter only",
    params_cls=UnipeltParams, trains=True, saves="adapter",
    build=build, save=save_trained, load=load, library="adapters",
))
