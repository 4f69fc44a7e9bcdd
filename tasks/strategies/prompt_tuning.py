"""Prompt tuning (PEFT): trainable virtual tokens in front of the input; the head trains too.

For BERT the virtual tokens go in front of [CLS], so the pooler reads the first virtual token.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tasks.models.heads import Head
from tasks.strategies._peft import peft_strategy, task_type
from tasks.strategies.registry import TrainableParams, learning_rate_field, register
from tasks.strategies.search import Choice, Range


@dataclass(frozen=True)
class PromptTuningParams(TrainableParams):
    learning_rate: float = learning_rate_field(3e-2)
    num_virtual_tokens: int = field(default=10, metadata={
        "help": "trainable virtual tokens in front of the input (1..100); 20 cost about 25 % throughput "
                "at max_length 64"})
    init_text: str | None = field(default=None, metadata={
        "help": "the virtual tokens start as this text's embeddings; null: the task in one sentence "
                "(classification: \"Classify the text as one of: <labels>.\"; generation: "
                "generation.instruction); \"\": random initialisation"})
    # Soft prompts learn slowly and are sensitive to the rate: epochs and length are searched too.
    SEARCH = {"learning_rate": Range(3e-3, 3e-1, log=True), "num_virtual_tokens": Choice((10, 20)),
              "epochs": Choice((2, 3))}

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.num_virtual_tokens <= 100:
            raise ValueError(f"num_virtual_tokens must be in 1..100, got {self.num_virtual_tokens}")


def init_text(params: PromptTuningParams, head: Head) -> str:
    """The text the virtual tokens start from: the params' own, else the head's task ("" = random)."""
    return params.init_text if params.init_text is not None else head.task_text()


def peft_config(base_dir: Path, params: PromptTuningParams, head: Head):
    from peft import PromptTuningConfig, PromptTuningInit

    text = init_text(params, head)
    init = ({"prompt_tuning_init": PromptTuningInit.TEXT, "prompt_tuning_init_text": text,
             "tokenizer_name_or_path": str(base_dir)}
            if text else {"prompt_tuning_init": PromptTuningInit.RANDOM})
    return PromptTuningConfig(task_type=task_type(head), num_virtual_tokens=params.num_virtual_tokens, **init)


register(peft_strategy("prompt_tuning", "PEFT soft prompt (virtual tokens) (+ trained head for classification); saves adapter only",
                       PromptTuningParams, peft_config, tasks=("classification", "generation")))
