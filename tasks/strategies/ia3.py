"""IA3 (PEFT): learned vectors that rescale keys, values and feed-forward activations."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tasks.models.loading import load_classifier
from tasks.strategies._peft import load_peft, merge_peft, save_peft
from tasks.strategies.registry import Strategy, TrainableParams, register


@dataclass(frozen=True)
class Ia3Params(TrainableParams):
    # IA3 scales start at 1 and move slowly: it needs a far higher rate than LoRA.
    learning_rate: float = 5e-3
    # None = PEFT's defaults for the architecture (BERT: key, value, output.dense)
    target_modules: list[str] | None = None
    feedforward_modules: list[str] | None = None

    def __post_init__(self):
        super().__post_init__()
        if (self.target_modules is None) != (self.feedforward_modules is None):
            raise ValueError("set both target_modules and feedforward_modules, or neither")


def build(base_dir: Path, labels: list[str], params: Ia3Params) -> nn.Module:
    from peft import IA3Config, TaskType, get_peft_model

    config = IA3Config(task_type=TaskType.SEQ_CLS, target_modules=params.target_modules,
                       feedforward_modules=params.feedforward_modules)
    return get_peft_model(load_classifier(base_dir, labels), config)


register(Strategy(
    name="ia3",
    summary="PEFT IA3 rescaling vectors + trained head; saves adapter only",
    params_cls=Ia3Params, trains=True, saves="adapter",
    build=build, save=save_peft, load=load_peft, library="peft", merge=merge_peft,
))
