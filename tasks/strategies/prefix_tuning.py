"""Prefix tuning (PEFT): trainable key/value prefixes in every attention layer."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tasks.models.loading import load_classifier
from tasks.strategies._peft import load_peft, save_peft
from tasks.strategies.registry import Strategy, TrainableParams, register


@dataclass(frozen=True)
class PrefixTuningParams(TrainableParams):
    learning_rate: float = 1e-2
    num_virtual_tokens: int = 10
    # Reparameterise the prefix through an MLP while training (stabler); off keeps it direct.
    prefix_projection: bool = False

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.num_virtual_tokens <= 100:
            raise ValueError(f"num_virtual_tokens must be in 1..100, got {self.num_virtual_tokens}")


def build(base_dir: Path, labels: list[str], params: PrefixTuningParams) -> nn.Module:
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    config = PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=params.num_virtual_tokens,
                                prefix_projection=params.prefix_projection)
    return get_peft_model(load_classifier(base_dir, labels), config)


register(Strategy(
    name="prefix_tuning",
    summary="PEFT prefix tuning (per-layer key/value prefixes) + trained head; saves adapter only",
    params_cls=PrefixTuningParams, trains=True, saves="adapter",
    build=build, save=save_peft, load=load_peft, library="peft",
))
