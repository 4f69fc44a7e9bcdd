"""Bottleneck adapters (`adapters` library): small down-/up-projection blocks in every layer.

Variants: `pfeiffer` puts one bottleneck after the feed-forward block (SeqBnConfig);
`houlsby` puts one after attention and one after the feed-forward block (DoubleSeqBnConfig).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tasks.strategies._adapters_lib import build_with_adapter
from tasks.strategies._trained_weights import load_trained, save_trained
from tasks.strategies.registry import Strategy, TrainableParams, register

VARIANTS = ("pfeiffer", "houlsby")


@dataclass(frozen=True)
class BottleneckParams(TrainableParams):
    learning_rate: float = 1e-3
    variant: str = "pfeiffer"
    reduction_factor: int = 16   # bottleneck width = hidden size / reduction_factor (384/16 = 24)

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


def build(base_dir: Path, labels: list[str], params: BottleneckParams) -> nn.Module:
    return build_with_adapter(base_dir, labels, adapter_config(params))


def load(base_dir: Path, saved_dir: Path, labels: list[str], params: BottleneckParams) -> nn.Module:
    return load_trained(build(base_dir, labels, params), saved_dir)


register(Strategy(
    name="bottleneck_adapter",
    summary="`adapters` bottleneck adapter (pfeiffer or houlsby) + trained head; saves adapter only",
    params_cls=BottleneckParams, trains=True, saves="adapter",
    build=build, save=save_trained, load=load, library="adapters",
))
