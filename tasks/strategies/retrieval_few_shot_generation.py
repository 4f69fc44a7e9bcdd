"""Retrieval few-shot generation: no training. Each input gets its own k demonstrations, the k
train examples nearest to it (MiniLM embeddings, FAISS: tasks/models/retrieval.py), as earlier
chat turns, then the input. The index is built from the train split the run hands to `variants`
(only train rows, so a validation or test input can never retrieve itself or another held-out
example), cached by its data version, and saved with the version: a registered version carries
the index it was evaluated with, bound to that data version and the encoder's fingerprint. The
model is RetrievalPromptedLM (tasks/strategies/_prompted_lm.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from tasks.models.heads import Head
from tasks.models.packaged import MINILM
from tasks.strategies.retrieval_index import filled_by_run, load_index, measure_retrieval, train_index
from tasks.strategies.registry import Strategy, register, run_prompt_field

if TYPE_CHECKING:   # torch, transformers: imported where a model is built, not to read settings
    from torch import nn

CONFIG_FILE, INDEX_DIR = "retrieval_few_shot_generation.json", "index"


@dataclass(frozen=True)
class RetrievalFewShotParams:
    instruction: str = run_prompt_field("instruction", "instruction")
    system_prompt: str = run_prompt_field("system_prompt", "system message")
    k: int = field(default=3, metadata={"help": "demonstrations per input: its k nearest train examples (1..16)"})
    demo_max_chars: int = field(default=300, metadata={
        "help": "a retrieved input longer than this many characters is cut in the prompt (not in the index): "
                "every token of a demonstration is attended to by every generated token"})
    embedder: str = field(default=MINILM, metadata={"help": "the sentence encoder the index is built with"})
    index: str = filled_by_run("the folder of the train split's index")
    data_version: str = filled_by_run("the train rows' sha256 the index is bound to")

    def __post_init__(self):
        if not 1 <= self.k <= 16:
            raise ValueError(f"k must be in 1..16, got {self.k}")
        if self.demo_max_chars <= 0:
            raise ValueError("demo_max_chars must be positive")


def variants(params: RetrievalFewShotParams, train: pd.DataFrame, labels=None) -> list[RetrievalFewShotParams]:
    """One configuration, with the index of `train` (built once per data version and encoder)."""
    folder, version = train_index(train, "target", params.embedder)
    return [replace(params, index=str(folder), data_version=version)]


def build(base_dir: Path, head: Head, params: RetrievalFewShotParams) -> nn.Module:
    if not params.instruction.strip():
        raise ValueError("strategies.retrieval_few_shot.instruction is empty (the run fills it from "
                         "generation.instruction)")
    from tasks.models.loading import load_tokenizer
    from tasks.strategies._prompted_lm import RetrievalPromptedLM, frozen_causal_lm

    index = load_index(params.index, params.embedder, params.data_version)
    return RetrievalPromptedLM(frozen_causal_lm(Path(base_dir)), load_tokenizer(base_dir), params, index).eval()


def save(model: nn.Module, out_dir: Path) -> None:
    """The prompt settings and a copy of the index (FAISS file + rows as JSON): the version
    answers with the examples it was evaluated with."""
    out_dir.mkdir(parents=True, exist_ok=True)
    p = model.params
    model.index.save(out_dir / INDEX_DIR)
    (out_dir / CONFIG_FILE).write_text(json.dumps(
        {"instruction": p.instruction, "system_prompt": p.system_prompt, "k": p.k,
         "demo_max_chars": p.demo_max_chars, "embedder": p.embedder, "data_version": p.data_version}, indent=2))


def load(base_dir: Path, saved_dir: Path, head: Head, params) -> nn.Module:
    """Refused when the saved index is not the data version the version names, or the encoder
    here is not the one it was built with."""
    saved = json.loads((saved_dir / CONFIG_FILE).read_text())
    return build(base_dir, head, RetrievalFewShotParams(**saved, index=str(saved_dir / INDEX_DIR)))


register(Strategy(
    name="retrieval_few_shot",
    summary="generation: each input's k nearest train examples (MiniLM + FAISS) as demonstrations; saves prompt + index",
    params_cls=RetrievalFewShotParams, trains=False, saves="config_only", build=build, save=save, load=load,
    library="none", variants=variants, base_kind="causal_lm", tasks=("generation",),
    retrieval_metrics=measure_retrieval,
))
