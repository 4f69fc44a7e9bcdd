"""Prompt tuning (PEFT): trainable virtual tokens in front of the input; the head trains too.

For BERT the virtual tokens go in front of [CLS], so the pooler reads the first virtual token.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tasks.models.loading import load_classifier
from tasks.strategies._peft import load_peft, save_peft
from tasks.strategies.registry import Strategy, TrainableParams, register


@dataclass(frozen=True)
class PromptTuningParams(TrainableParams):
    learning_rate: float = 3e-2
    num_virtual_tokens: int = 10   # 20 tokens cost about 25 % throughput at max_length 64
    # Initialise the virtual tokens from this text's embeddings ("" = random init).
    init_text: str = "Is this movie review positive or negative?"

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.num_virtual_tokens <= 100:
            raise ValueError(f"num_virtual_tokens must be in 1..100, got {self.num_virtual_tokens}")


def build(base_dir: Path, labels: list[str], params: PromptTuningParams) -> nn.Module:
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    init = ({"prompt_tuning_init": PromptTuningInit.TEXT, "prompt_tuning_init_text": params.init_text,
             "tokenizer_name_or_path": str(base_dir)}
            if params.init_text else {"prompt_tuning_init": PromptTuningInit.RANDOM})
    config = PromptTuningConfig(task_type=TaskType.SEQ_CLS,
                                num_virtual_tokens=params.num_virtual_tokens, **init)
    return get_peft_model(load_classifier(base_dir, labels), config)


register(Strategy(
    name="prompt_tuning",
    summary="PEFT soft prompt (virtual tokens) + trained head; saves adapter only",
    params_cls=PromptTuningParams, trains=True, saves="adapter",
    build=build, save=save_peft, load=load_peft, library="peft",
))
