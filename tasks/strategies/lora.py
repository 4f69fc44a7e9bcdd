"""LoRA (PEFT): low-rank updates on the chosen linear layers; the head trains too."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from tasks.models.loading import load_classifier
from tasks.strategies._peft import load_peft, merge_peft, save_peft
from tasks.strategies.registry import Strategy, TrainableParams, register


@dataclass(frozen=True)
class LoraParams(TrainableParams):
    learning_rate: float = 1e-3
    r: int = 8                 # rank of each update
    alpha: int = 16            # scaling is alpha / r
    dropout: float = 0.1
    # BERT names: query/key/value (attention), dense (attention output, FFN, pooler)
    target_modules: list[str] = field(default_factory=lambda: ["query", "value"])

    def __post_init__(self):
        super().__post_init__()
        if self.r <= 0 or self.alpha <= 0:
            raise ValueError(f"r and alpha must be positive, got r={self.r}, alpha={self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("target_modules must name at least one module")


def build(base_dir: Path, labels: list[str], params: LoraParams) -> nn.Module:
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=params.r, lora_alpha=params.alpha,
                        lora_dropout=params.dropout, target_modules=list(params.target_modules))
    return get_peft_model(load_classifier(base_dir, labels), config)


register(Strategy(
    name="lora",
    summary="PEFT LoRA adapters + trained head; saves adapter only",
    params_cls=LoraParams, trains=True, saves="adapter",
    build=build, save=save_peft, load=load_peft, library="peft", merge=merge_peft,
))
