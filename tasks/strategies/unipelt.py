"""UniPELT (`adapters`): a gated union of LoRA, prefix tuning and a bottleneck adapter; each
gate learns how much its method contributes."""
from __future__ import annotations

from dataclasses import dataclass

from tasks.strategies._adapters_lib import adapters_strategy
from tasks.strategies.registry import TrainableParams, register


@dataclass(frozen=True)
class UnipeltParams(TrainableParams):
    learning_rate: float = 1e-3
    lora_r: int = 8
    prefix_length: int = 10
    reduction_factor: int = 16
    POSITIVE = ("lora_r", "prefix_length", "reduction_factor")


def adapter_config(params: UnipeltParams):
    from adapters import LoRAConfig, PrefixTuningConfig, SeqBnConfig, UniPELTConfig

    return UniPELTConfig(prefix_tuning=PrefixTuningConfig(prefix_length=params.prefix_length),
                         adapter=SeqBnConfig(reduction_factor=params.reduction_factor),
                         lora=LoRAConfig(r=params.lora_r, alpha=2))


register(adapters_strategy(
    "unipelt", "UniPELT: gated LoRA + prefix + bottleneck (`adapters`) + trained head; saves adapter only",
    UnipeltParams, adapter_config))
