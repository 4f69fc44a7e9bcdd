"""UniPELT (`adapters`): a gated union of LoRA, prefix tuning and a bottleneck adapter; each
gate learns how much its method contributes."""
from __future__ import annotations

from dataclasses import dataclass, field

from tasks.strategies._adapters_lib import adapters_strategy
from tasks.strategies.registry import TrainableParams, learning_rate_field, register


@dataclass(frozen=True)
class UnipeltParams(TrainableParams):
    learning_rate: float = learning_rate_field(1e-3)
    lora_r: int = field(default=8, metadata={"help": "rank of the LoRA part (its alpha is 2)"})
    prefix_length: int = field(default=10, metadata={"help": "length of the prefix-tuning part, in every layer"})
    reduction_factor: int = field(default=16, metadata={
        "help": "the bottleneck part's width = hidden size / reduction_factor"})
    POSITIVE = ("lora_r", "prefix_length", "reduction_factor")


def adapter_config(params: UnipeltParams):
    from adapters import LoRAConfig, PrefixTuningConfig, SeqBnConfig, UniPELTConfig

    return UniPELTConfig(prefix_tuning=PrefixTuningConfig(prefix_length=params.prefix_length),
                         adapter=SeqBnConfig(reduction_factor=params.reduction_factor),
                         lora=LoRAConfig(r=params.lora_r, alpha=2))


register(adapters_strategy(
    "unipelt", "UniPELT: gated LoRA + prefix + bottleneck (`adapters`) + trained head; saves adapter only",
    UnipeltParams, adapter_config))
