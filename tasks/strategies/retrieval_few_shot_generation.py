"""Retrieval few-shot generation: no training. Each input gets its own k demonstrations, the k
train examples nearest to it (MiniLM embeddings, FAISS: tasks/models/retrieval.py), as earlier
chat turns, then the input. The index is built from the train split the run hands to `variants`
(only train rows, so a validation or test input can never retrieve itself or another held-out
example), cached by its data version, and saved with the version: a registered version carries
the index it was evaluated with, bound to that data version and the encoder's fingerprint."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
from torch import nn

from tasks.models.heads import Head
from tasks.models.loading import load_tokenizer
from tasks.models.packaged import MINILM
from tasks.models.prompts import PromptFormat
from tasks.models.retrieval import RetrievalIndex
from tasks.strategies._prompted_lm import PromptedLM, frozen_causal_lm, run_prompt_field
from tasks.strategies.retrieval_index import (
    cost_metrics,
    filled_by_run,
    generation_formats,
    load_index,
    measure_retrieval,
    timed_neighbours,
    train_index,
)
from tasks.strategies.registry import Strategy, register

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


class RetrievalPromptedLM(PromptedLM):
    """A frozen LM whose prompt format depends on the input: `prompt_formats(texts)`."""

    def __init__(self, lm: nn.Module, tokenizer, params: RetrievalFewShotParams, index: RetrievalIndex):
        super().__init__(lm, tokenizer, PromptFormat(params.system_prompt, params.instruction), params,
                         cache_prefix=False)
        self.index, self.tokenizer = index, tokenizer
        self.single_query_ms: list[float] = []   # one input at a time, as a user's request waits for it

    def prompt_formats(self, texts: list[str], fmt: PromptFormat | None = None) -> list[PromptFormat]:
        """Each input's prompt (`fmt`, the run's, is not used: this strategy's params carry its own)."""
        p = self.params
        rows = timed_neighbours(self.index, texts, p.k, self.single_query_ms)
        return generation_formats(rows, PromptFormat(p.system_prompt, p.instruction), p.demo_max_chars)

    def retrieval_metrics(self, texts: list[str], tokenizer=None, fmt=None) -> dict[str, float]:
        """(tokenizer and fmt: this model's own are used.)"""
        from tasks.models.prompts import render

        plain = PromptFormat(self.params.system_prompt, self.params.instruction)
        n = lambda fmt, text: len(self.tokenizer(render(self.tokenizer, fmt, text), add_special_tokens=False)["input_ids"])
        extra = [n(f, t) - n(plain, t) for f, t in zip(self.prompt_formats(texts), texts)]
        return cost_metrics(self.index, self.single_query_ms, extra)


def build(base_dir: Path, head: Head, params: RetrievalFewShotParams) -> nn.Module:
    if not params.instruction.strip():
        raise ValueError("strategies.retrieval_few_shot.instruction is empty (the run fills it from "
                         "generation.instruction)")
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
