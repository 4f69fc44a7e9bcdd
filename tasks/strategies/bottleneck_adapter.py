"""Bottleneck adapters (`adapters` library): small down-/up-projection blocks in every layer.

Variants: `pfeiffer` puts one bottleneck after the feed-forward block (SeqBnConfig);
`houlsby` puts one after attention and one after the feed-forward block (DoubleSeqBnConfig).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tasks.strategies._adapters_lib import adapters_strategy
from tasks.strategies.registry import TrainableParams, learning_rate_field, register
from tasks.strategies.search import Choice, Range

VARIANTS = ("pfeiffer", "houlsby")


@dataclass(frozen=True)
class BottleneckParams(TrainableParams):
    learning_rate: float = learning_rate_field(1e-3)
    variant: str = field(default="pfeiffer", metadata={
        "help": "pfeiffer: one bottleneck after the feed-forward block; houlsby: one after attention and one "
                "after the feed-forward block"})
    reduction_factor: int = field(default=16, metadata={
        "help": "bottleneck width = hidden size / reduction_factor (MiniLM: 384 / 16 = 24)"})
    SEARCH = {"learning_rate": Range(2e-4, 5e-3, log=True), "reduction_factor": Choice((8, 16, 32))}

    def __post_init__(self):
        super().__post_init__()
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.reduction_factor < 1:
            raise ValueError(f"reduction_factor must be >= 1, got {self.reduction_factor}")


def adapter_config(params: BottleneckParams):
    from adapters import DoubleSeqBnConfig, SeqBnConfig

    cls = SeqBnConfig if params.variant == "pfeiffer" else DoubleSeqBnConfig
    return cls(reduction_factor=params.reduction_factor)


register(adapters_strategy(
    "bottleneck_adapter", "`adapters` bottleneck adapter (pfeiffer or houlsby) + trained head; saves adapter only",
    BottleneckParams, adapter_config))
