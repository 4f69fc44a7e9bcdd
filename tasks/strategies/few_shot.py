"""Few-shot prompting of a causal LM (SmolLM2-135M-Instruct by default): no training.

The prompt is a named, versioned template: an instruction, k demonstrations drawn
reproducibly from train, then the example. Each label is scored by the log-likelihood of its
verbalizer after the example; the highest wins. The demonstrations are the same for every
example, so their key/value cache is computed once and reused: scoring an example costs only
its own tokens (`score_uncached` is the reference it must equal). The model is
FewShotClassifier (tasks/strategies/_prompted_lm.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tasks.models.packaged import SMOLLM2
from tasks.models.heads import Head
from tasks.strategies._templates import DEFAULT_TEMPLATES, TEMPLATE_PARTS, template_problem
from tasks.strategies.registry import Strategy, register

if TYPE_CHECKING:   # torch, transformers: imported where a model is built, not to read settings
    from torch import nn

CONFIG_FILE = "few_shot.json"


@dataclass(frozen=True)
class FewShotParams:
    base: str = field(default=SMOLLM2, metadata={
        "help": "the causal LM that is prompted (its own base, whatever model.base is)"})
    templates: dict[str, dict[str, str]] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES), metadata={
        "help": "name@version -> {instruction, example, answer, separator}; {text} is the example, {label} the "
                "verbalizer; change a text = add a new version. The chosen one is saved with the version and "
                "logged with the run"})
    template: str = field(default="review-sentiment@v1", metadata={"help": "the template used (one of templates)"})
    k: int = field(default=4, metadata={"help": "demonstrations, drawn from train balanced across labels"})
    demo_seed: int = field(default=13, metadata={"help": "seed of the demonstrations' draw"})
    verbalizers: dict[str, str] = field(default_factory=lambda: {"negative": "negative", "positive": "positive"},
                                        metadata={"help": "label -> the answer text scored after each example"})
    demonstrations: list[dict[str, str]] = field(default_factory=list, metadata={
        "help": "filled from the train split by the run (and saved): the prompt is fully reproducible; not a "
                "setting"})
    variants: list[dict] = field(default_factory=lambda: [{"demo_seed": 14}, {"demo_seed": 15},
                                                          {"template": "critic-verdict@v1"}], metadata={
        "help": "prompt stability: each entry overrides template, k, demo_seed or verbalizers for one more "
                "variant; every variant is evaluated, the best on validation is saved"})
    max_test_examples: int = field(default=300, metadata={
        "help": "test examples scored (the same ones for every variant): a 135M LM on 2 cores scores about 10 "
                "examples/s"})
    calibrate: bool = field(default=True, metadata={
        "help": "contextual calibration (Zhao et al., 2021): divide each label's probability by its mean "
                "probability after content-free inputs, removing the prompt's bias towards one label "
                "(uncalibrated, 3 of the 4 default prompts predicted \"positive\" for most reviews: test "
                "accuracy 0.58-0.65 but macro-F1 0.37-0.64)"})
    content_free: list[str] = field(default_factory=lambda: ["N/A", "", "[MASK]"], metadata={
        "help": "the content-free inputs calibration scores"})

    def __post_init__(self):
        for name, t in self.templates.items():
            if "@" not in name:
                raise ValueError(f"template name {name!r} needs a version: name@v1")
            if set(t) != set(TEMPLATE_PARTS):
                raise ValueError(f"template {name!r} must have exactly {', '.join(TEMPLATE_PARTS)}")
            for part, fields_needed in TEMPLATE_PARTS.items():
                for f in fields_needed:
                    if t[part].count(f) != 1:
                        raise ValueError(f"template {name!r}: {part} must contain {f} once")
            problem = template_problem(name, t)
            if problem:
                raise ValueError(problem)
        if self.template not in self.templates:
            raise ValueError(f"template must be one of {', '.join(self.templates)}, got {self.template!r}")
        if self.k < 0:
            raise ValueError(f"k must be >= 0, got {self.k}")
        if not self.verbalizers or any(not v.strip() for v in self.verbalizers.values()):
            raise ValueError("verbalizers must map every label to non-empty text")
        for v in self.variants:
            unknown = set(v) - {"template", "k", "demo_seed", "verbalizers"}
            if v.get("template", self.template) not in self.templates:
                raise ValueError(f"variant {v}: unknown template; known: {', '.join(self.templates)}")
            if unknown:
                raise ValueError(f"a variant may override template, k, demo_seed or verbalizers, not {sorted(unknown)}")


def draw_demonstrations(train: pd.DataFrame, labels: list[str], k: int, seed: int) -> list[dict[str, str]]:
    """k examples, as balanced across labels as k allows, in a seeded random order."""
    rng = np.random.default_rng(seed)
    per_label = [train[train["label"] == label] for label in labels]
    picks = []
    for i in range(k):
        pool = per_label[i % len(labels)]
        picks.append(pool.iloc[int(rng.integers(len(pool)))])
    order = rng.permutation(len(picks))
    return [{"text": str(picks[i]["text"]), "label": str(picks[i]["label"])} for i in order]


def variants(params: FewShotParams, train: pd.DataFrame, labels: list[str]) -> list[FewShotParams]:
    out = []
    for override in [{}, *params.variants]:
        v = replace(params, **override, variants=[])
        v = replace(v, templates={v.template: v.templates[v.template]})   # only what this variant uses
        out.append(replace(v, demonstrations=draw_demonstrations(train, labels, v.k, v.demo_seed)))
    return out


def build(base_dir: Path, head: Head, params: FewShotParams) -> nn.Module:
    labels = list(head.labels)
    missing = [label for label in labels if label not in params.verbalizers]
    if missing:
        raise ValueError(f"strategies.few_shot.verbalizers has no entry for label(s) {', '.join(missing)}")
    from tasks.models.loading import load_tokenizer
    from tasks.strategies._prompted_lm import FewShotClassifier, frozen_causal_lm

    return FewShotClassifier(frozen_causal_lm(Path(base_dir)), load_tokenizer(base_dir), labels, params)


def save(model: nn.Module, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    p = model.params
    (out_dir / CONFIG_FILE).write_text(json.dumps(
        {"template": p.template, "templates": {p.template: p.templates[p.template]}, "k": p.k,
         "demo_seed": p.demo_seed, "verbalizers": p.verbalizers, "demonstrations": p.demonstrations,
         "calibrate": p.calibrate, "content_free": p.content_free},
        indent=2))


def load(base_dir: Path, saved_dir: Path, head: Head, params: FewShotParams) -> nn.Module:
    saved = json.loads((saved_dir / CONFIG_FILE).read_text())
    saved.setdefault("calibrate", False)   # prompts saved before calibration existed predicted without it
    return build(base_dir, head, replace(params, **saved, variants=[]))


register(Strategy(
    name="few_shot",
    summary="in-context prompting of SmolLM2 (k demonstrations, verbalizer log-likelihood); saves the prompt",
    params_cls=FewShotParams, trains=False, saves="config_only",
    build=build, save=save, load=load, library="none", variants=variants, base_kind="causal_lm",
))
