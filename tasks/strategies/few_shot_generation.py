"""Few-shot generation: no training. k demonstrations (input, target) drawn reproducibly from
the train split go before the input as earlier chat turns; the demonstrations' key/value cache
is computed once and reused for every input (tasks/strategies/_prompted_lm.py). Variants are
other demonstration draws; the one best on validation is saved with its demonstrations."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tasks.models.heads import Head
from tasks.models.prompts import PromptFormat
from tasks.strategies.registry import Strategy, register, run_prompt_field

if TYPE_CHECKING:   # torch, transformers: imported where a model is built, not to read settings
    from torch import nn

CONFIG_FILE = "few_shot_generation.json"


@dataclass(frozen=True)
class FewShotGenerationParams:
    instruction: str = run_prompt_field("instruction", "instruction")
    system_prompt: str = run_prompt_field("system_prompt", "system message")
    k: int = field(default=3, metadata={"help": "demonstrations (1..16), as earlier chat turns"})
    demo_seed: int = field(default=13, metadata={"help": "seed of the demonstrations' draw"})
    demo_max_chars: int = field(default=300, metadata={
        "help": "demonstrations are drawn from train inputs no longer than this many characters, so the "
                "shared prefix stays short (every token of it is attended to by every generated token)"})
    demonstrations: list[list[str]] = field(default_factory=list, metadata={
        "help": "[input, target] pairs filled from the train split by the run (and saved): the prompt is fully "
                "reproducible; not a setting"})
    variants: list[dict] = field(default_factory=lambda: [{"demo_seed": 14}, {"demo_seed": 15}], metadata={
        "help": "prompt stability: each entry changes demo_seed or k for one more variant; the one best on "
                "validation is saved"})

    def __post_init__(self):
        if not 1 <= self.k <= 16:
            raise ValueError(f"k must be in 1..16, got {self.k}")
        if self.demo_max_chars <= 0:
            raise ValueError("demo_max_chars must be positive")
        known = {"demo_seed", "k"}
        for v in self.variants:
            if set(v) - known:
                raise ValueError(f"a variant may change {', '.join(sorted(known))}; got {sorted(v)}")


def draw_demonstrations(train: pd.DataFrame, k: int, seed: int, max_chars: int) -> list[list[str]]:
    short = train[train["text"].str.len() <= max_chars]
    pool = short if len(short) >= k else train
    if len(pool) < k:
        raise ValueError(f"few_shot needs {k} demonstrations; the train split has {len(pool)} rows")
    rows = pool.iloc[np.random.default_rng(seed).choice(len(pool), size=k, replace=False)]
    return [[str(t), str(y)] for t, y in zip(rows["text"], rows["target"])]


def variants(params: FewShotGenerationParams, train: pd.DataFrame, labels=None) -> list[FewShotGenerationParams]:
    out = []
    for change in [{}, *params.variants]:
        v = replace(params, **change, variants=[])
        out.append(replace(v, demonstrations=draw_demonstrations(train, v.k, v.demo_seed, v.demo_max_chars)))
    return out


def prompt_format(params: FewShotGenerationParams) -> PromptFormat:
    return PromptFormat(params.system_prompt, params.instruction,
                        tuple((str(i), str(t)) for i, t in params.demonstrations))


def build(base_dir: Path, head: Head, params: FewShotGenerationParams) -> nn.Module:
    if not params.demonstrations:
        raise ValueError("few_shot has no demonstrations: the run draws them from the train split")
    from tasks.models.loading import load_tokenizer
    from tasks.strategies._prompted_lm import PromptedLM, frozen_causal_lm

    return PromptedLM(frozen_causal_lm(Path(base_dir)), load_tokenizer(base_dir), prompt_format(params), params,
                      cache_prefix=True).eval()


def save(model: nn.Module, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    p = model.params
    (out_dir / CONFIG_FILE).write_text(json.dumps(
        {"instruction": p.instruction, "system_prompt": p.system_prompt, "k": p.k, "demo_seed": p.demo_seed,
         "demo_max_chars": p.demo_max_chars, "demonstrations": p.demonstrations}, indent=2))


def load(base_dir: Path, saved_dir: Path, head: Head, params) -> nn.Module:
    saved = json.loads((saved_dir / CONFIG_FILE).read_text())
    return build(base_dir, head, FewShotGenerationParams(**saved, variants=[]))


register(Strategy(
    name="few_shot",
    summary="generation: k demonstrations as earlier chat turns, their KV cache reused; saves the prompt",
    params_cls=FewShotGenerationParams, trains=False, saves="config_only", build=build, save=save, load=load,
    library="none", variants=variants, base_kind="causal_lm", tasks=("generation",),
))
