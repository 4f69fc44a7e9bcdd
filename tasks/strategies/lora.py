"""LoRA (PEFT): low-rank updates on the chosen linear layers; the head trains too."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tasks.models.heads import Head
from tasks.strategies._peft import peft_strategy, task_type
from tasks.strategies.registry import TrainableParams, learning_rate_field, register
from tasks.strategies.search import Choice, Range


@dataclass(frozen=True)
class LoraParams(TrainableParams):
    learning_rate: float = learning_rate_field(1e-3)
    r: int = field(default=8, metadata={"help": "rank of each low-rank update"})
    alpha: int = field(default=16, metadata={"help": "scaling of each update: alpha / r"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on the LoRA path, in [0, 1)"})
    target_modules: list[str] | None = field(default=None, metadata={
        "help": "the linear layers that get an update. BERT: query, key, value (attention), dense (attention "
                "output, FFN, pooler); Llama: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj. "
                "null: PEFT's default for the architecture (the attention query and value projections for "
                "BERT and Llama alike)"})
    POSITIVE = ("r", "alpha")
    # alpha stays fixed, so a larger rank also scales each update down (alpha / r)
    SEARCH = {"learning_rate": Range(2e-4, 5e-3, log=True), "r": Choice((4, 8, 16))}

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.target_modules is not None and not self.target_modules:
            raise ValueError("target_modules must name at least one module (or be null: PEFT's default)")


def peft_config(base_dir: Path, params: LoraParams, head: Head):
    from peft import LoraConfig

    return LoraConfig(task_type=task_type(head), r=params.r, lora_alpha=params.alpha,
                      lora_dropout=params.dropout,
                      target_modules=list(params.target_modules) if params.target_modules else None)


register(peft_strategy("lora", "PEFT LoRA adapters (+ trained head for classification); saves adapter only",
                       LoraParams, peft_config, mergeable=True, tasks=("classification", "generation")))
