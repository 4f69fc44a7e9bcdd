"""IA3 (PEFT): learned vectors that rescale keys, values and feed-forward activations."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tasks.models.heads import Head
from tasks.strategies._peft import peft_strategy, task_type
from tasks.strategies.registry import TrainableParams, learning_rate_field, register
from tasks.strategies.search import Range


@dataclass(frozen=True)
class Ia3Params(TrainableParams):
    learning_rate: float = learning_rate_field(
        5e-3, "IA3 scales start at 1 and move slowly: it needs a far higher rate than LoRA")
    SEARCH = {"learning_rate": Range(1e-3, 5e-2, log=True)}
    target_modules: list[str] | None = field(default=None, metadata={
        "help": "the layers whose activations are rescaled (e.g. Llama: k_proj, v_proj, down_proj); null: "
                "PEFT's default for the architecture (BERT: key, value, output.dense); set with "
                "feedforward_modules, or neither"})
    feedforward_modules: list[str] | None = field(default=None, metadata={
        "help": "which of target_modules are feed-forward layers (their input is rescaled, not their "
                "output); null: PEFT's default"})

    def __post_init__(self):
        super().__post_init__()
        if (self.target_modules is None) != (self.feedforward_modules is None):
            raise ValueError("set both target_modules and feedforward_modules, or neither")


def peft_config(base_dir: Path, params: Ia3Params, head: Head):
    from peft import IA3Config

    return IA3Config(task_type=task_type(head), target_modules=params.target_modules,
                     feedforward_modules=params.feedforward_modules)


register(peft_strategy("ia3", "PEFT IA3 rescaling vectors (+ trained head for classification); saves adapter only",
                       Ia3Params, peft_config, mergeable=True, tasks=("classification", "generation")))
