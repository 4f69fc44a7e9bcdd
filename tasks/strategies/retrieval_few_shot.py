"""Retrieval few-shot classification: no training. Like few_shot (a template, verbalizers, each
label scored by the log-likelihood of its verbalizer), but each example's k demonstrations are
the k train examples nearest to it (MiniLM + FAISS, tasks/models/retrieval.py) instead of one
fixed draw. The prompt differs per example, so there is no shared prefix cache: each example and
label runs its whole prompt (batched). Only train rows are indexed: a validation or test example
never sees itself or another held-out example. The index is saved with the version. The model
is RetrievalFewShotClassifier (tasks/strategies/_prompted_lm.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from tasks.models.heads import Head
from tasks.models.packaged import MINILM, SMOLLM2
from tasks.strategies._templates import DEFAULT_TEMPLATES, TEMPLATE_PARTS, template_problem
from tasks.strategies.retrieval_index import filled_by_run, load_index, measure_retrieval, train_index
from tasks.strategies.registry import Strategy, register

if TYPE_CHECKING:   # torch, transformers: imported where a model is built, not to read settings
    from torch import nn

CONFIG_FILE, INDEX_DIR = "retrieval_few_shot.json", "index"


@dataclass(frozen=True)
class RetrievalFewShotParams:
    base: str = field(default=SMOLLM2, metadata={
        "help": "the causal LM that is prompted (its own base, whatever model.base is)"})
    templates: dict[str, dict[str, str]] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES), metadata={
        "help": "name@version -> {instruction, example, answer, separator}, as few_shot's"})
    template: str = field(default="review-sentiment@v1", metadata={"help": "the template used (one of templates)"})
    k: int = field(default=4, metadata={"help": "demonstrations per example: its k nearest train examples (1..16)"})
    verbalizers: dict[str, str] = field(default_factory=lambda: {"negative": "negative", "positive": "positive"},
                                        metadata={"help": "label -> the answer text scored after each example"})
    demo_max_chars: int = field(default=300, metadata={
        "help": "a retrieved text longer than this many characters is cut in the prompt"})
    max_test_examples: int = field(default=300, metadata={
        "help": "test examples scored (the same ones as few_shot's); every example runs its whole prompt, with "
                "no shared prefix cache: slower than few_shot"})
    embedder: str = field(default=MINILM, metadata={
        "help": "the sentence encoder the index is built with (MiniLM embeddings searched with FAISS)"})
    index: str = filled_by_run("the folder of the train split's index")
    data_version: str = filled_by_run("the train rows' sha256 the index is bound to")

    def __post_init__(self):
        if self.template not in self.templates:
            raise ValueError(f"template must be one of {', '.join(self.templates)}, got {self.template!r}")
        t = self.templates[self.template]
        if set(t) != set(TEMPLATE_PARTS):
            raise ValueError(f"template {self.template!r} must have exactly {', '.join(TEMPLATE_PARTS)}")
        problem = template_problem(self.template, t)
        if problem:
            raise ValueError(problem)
        if not 1 <= self.k <= 16:
            raise ValueError(f"k must be in 1..16, got {self.k}")
        if self.demo_max_chars <= 0:
            raise ValueError("demo_max_chars must be positive")
        if not self.verbalizers or any(not v.strip() for v in self.verbalizers.values()):
            raise ValueError("verbalizers must map every label to non-empty text")


def variants(params: RetrievalFewShotParams, train: pd.DataFrame, labels: list[str]) -> list[RetrievalFewShotParams]:
    """One configuration, with the index of `train` (built once per data version and encoder)."""
    folder, version = train_index(train, "label", params.embedder)
    return [replace(params, index=str(folder), data_version=version,
                    templates={params.template: params.templates[params.template]})]


def build(base_dir: Path, head: Head, params: RetrievalFewShotParams) -> nn.Module:
    labels = list(head.labels)
    missing = [label for label in labels if label not in params.verbalizers]
    if missing:
        raise ValueError(f"strategies.retrieval_few_shot.verbalizers has no entry for label(s) {', '.join(missing)}")
    from tasks.models.loading import load_tokenizer
    from tasks.strategies._prompted_lm import RetrievalFewShotClassifier, frozen_causal_lm

    index = load_index(params.index, params.embedder, params.data_version)
    return RetrievalFewShotClassifier(frozen_causal_lm(Path(base_dir)), load_tokenizer(base_dir), labels, params,
                                      index)


def save(model: nn.Module, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    p = model.params
    model.index.save(out_dir / INDEX_DIR)
    (out_dir / CONFIG_FILE).write_text(json.dumps(
        {"template": p.template, "templates": {p.template: p.templates[p.template]}, "k": p.k,
         "verbalizers": p.verbalizers, "demo_max_chars": p.demo_max_chars, "embedder": p.embedder,
         "data_version": p.data_version}, indent=2))


def load(base_dir: Path, saved_dir: Path, head: Head, params: RetrievalFewShotParams) -> nn.Module:
    saved = json.loads((saved_dir / CONFIG_FILE).read_text())
    return build(base_dir, head, replace(params, **saved, index=str(saved_dir / INDEX_DIR)))


register(Strategy(
    name="retrieval_few_shot",
    summary="few_shot whose k demonstrations are each example's nearest train examples (MiniLM + FAISS); saves prompt + index",
    params_cls=RetrievalFewShotParams, trains=False, saves="config_only",
    build=build, save=save, load=load, library="none", variants=variants, base_kind="causal_lm",
    retrieval_metrics=measure_retrieval,
))
