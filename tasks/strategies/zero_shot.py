"""Zero-shot baseline: no training. Cosine similarity between the mean-pooled embedding of
a text and of each label's description; the most similar label wins.

MiniLM was trained as a sentence encoder with mean pooling, so this is how its embeddings are
meant to be compared.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.models.heads import Head
from tasks.strategies.registry import Strategy, register

if TYPE_CHECKING:   # torch, transformers: imported where a model is built, not to read settings
    from torch import nn

CONFIG_FILE = "zero_shot.json"


@dataclass(frozen=True)
class ZeroShotParams:
    label_descriptions: dict[str, str] = field(default_factory=lambda: {
        "negative": "a negative, critical movie review",
        "positive": "a positive, enthusiastic movie review",
    }, metadata={"help": "label -> the text embedded as that label's prototype; must cover every label"})
    temperature: float = field(default=0.05, metadata={
        "help": "logits = cosine similarity / temperature; sets confidence, not accuracy"})
    variants: list[dict[str, str]] = field(default_factory=lambda: [
        {"negative": "I did not like this film.", "positive": "I loved this film."},
        {"negative": "bad", "positive": "good"},
    ], metadata={"help": "other sets of descriptions, each evaluated too (prompt stability): test_accuracy is "
                         "the mean over all sets, prompt_variant_std their spread; the set best on validation "
                         "is saved"})

    def __post_init__(self):
        for descriptions in [self.label_descriptions, *self.variants]:
            if not descriptions:
                raise ValueError("label descriptions must not be empty")
            if any(not str(d).strip() for d in descriptions.values()):
                raise ValueError("every label description must be non-empty text")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")


def build(base_dir: Path, head: Head, params: ZeroShotParams) -> nn.Module:
    import torch

    from tasks.models.embedding import ZeroShotClassifier, embed, frozen_encoder
    from tasks.models.loading import load_tokenizer

    labels = list(head.labels)
    missing = [label for label in labels if label not in params.label_descriptions]
    if missing:
        raise ValueError(f"strategies.zero_shot.label_descriptions has no description for "
                         f"label(s) {', '.join(missing)}; add one per label")
    tokenizer = load_tokenizer(base_dir)
    encoder = frozen_encoder(Path(base_dir))
    enc = tokenizer([params.label_descriptions[label] for label in labels], padding=True,
                    return_tensors="pt")
    with torch.no_grad():
        prototypes = embed(encoder, enc["input_ids"], enc["attention_mask"])
    return ZeroShotClassifier(encoder, prototypes, params).eval()


def variants(params: ZeroShotParams, train=None, labels=None) -> list[ZeroShotParams]:
    """One configuration per set of descriptions; each saved alone (variants=[])."""
    return [replace(params, label_descriptions=d, variants=[])
            for d in [params.label_descriptions, *params.variants]]


def save(model: nn.Module, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    p = model.params
    (out_dir / CONFIG_FILE).write_text(json.dumps(
        {"label_descriptions": p.label_descriptions, "temperature": p.temperature}, indent=2))


def load(base_dir: Path, saved_dir: Path, head: Head, params: ZeroShotParams | None) -> nn.Module:
    saved = json.loads((saved_dir / CONFIG_FILE).read_text())
    return build(base_dir, head, ZeroShotParams(**saved, variants=[]))


register(Strategy(
    name="zero_shot",
    summary="no training: cosine similarity to label descriptions; saves the descriptions only",
    params_cls=ZeroShotParams, trains=False, saves="config_only",
    build=build, save=save, load=load, library="none", variants=variants,
))
