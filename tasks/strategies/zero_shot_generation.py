"""Zero-shot generation: no training. The causal LM is asked in its chat template (system
message, then the instruction and the input as the user's turn) and answers greedily. Prompt
variants are other instructions; the one best on validation is saved."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.models.heads import Head
from tasks.models.prompts import PromptFormat
from tasks.strategies.registry import Strategy, register, run_prompt_field

if TYPE_CHECKING:   # torch, transformers: imported where a model is built, not to read settings
    from torch import nn

CONFIG_FILE = "zero_shot_generation.json"


@dataclass(frozen=True)
class ZeroShotGenerationParams:
    instruction: str = run_prompt_field("instruction", "instruction")
    system_prompt: str = run_prompt_field("system_prompt", "system message")
    variants: list[str] = field(default_factory=list, metadata={
        "help": "other instructions, each evaluated too (prompt stability); the one best on validation is saved"})

    def __post_init__(self):
        if any(not str(v).strip() for v in self.variants):
            raise ValueError("every instruction variant must be non-empty text")


def prompt_format(params) -> PromptFormat:
    return PromptFormat(params.system_prompt, params.instruction)


def build(base_dir: Path, head: Head, params: ZeroShotGenerationParams) -> nn.Module:
    if not params.instruction.strip():
        raise ValueError("strategies.zero_shot.instruction is empty (the run fills it from generation.instruction)")
    from tasks.models.loading import load_tokenizer
    from tasks.strategies._prompted_lm import PromptedLM, frozen_causal_lm

    return PromptedLM(frozen_causal_lm(Path(base_dir)), load_tokenizer(base_dir), prompt_format(params), params,
                      cache_prefix=True).eval()


def variants(params: ZeroShotGenerationParams, train=None, labels=None) -> list[ZeroShotGenerationParams]:
    return [replace(params, instruction=i, variants=[]) for i in [params.instruction, *params.variants]]


def save(model: nn.Module, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    p = model.params
    (out_dir / CONFIG_FILE).write_text(json.dumps({"instruction": p.instruction, "system_prompt": p.system_prompt},
                                                  indent=2))


def load(base_dir: Path, saved_dir: Path, head: Head, params) -> nn.Module:
    saved = json.loads((saved_dir / CONFIG_FILE).read_text())
    return build(base_dir, head, ZeroShotGenerationParams(**saved))


register(Strategy(
    name="zero_shot",
    summary="generation: the causal LM answers an instruction in its chat template; saves the prompt",
    params_cls=ZeroShotGenerationParams, trains=False, saves="config_only", build=build, save=save, load=load,
    library="none", variants=variants, base_kind="causal_lm", tasks=("generation",),
))
