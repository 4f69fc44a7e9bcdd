"""Partial fine-tuning: the embeddings and the lower N layers stay frozen; the top layers,
the pooler and the head train (generation: the top layers and the final norm; a causal LM's
head is usually tied to the frozen embeddings). Saves only what trained, loaded back onto the base."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.models.heads import Head
from tasks.strategies._trained_weights import reload_onto_build, save_trained
from tasks.strategies.registry import Strategy, TrainableParams, learning_rate_field, register
from tasks.strategies.search import Range

if TYPE_CHECKING:   # annotations only: importing torch costs 1 s, and settings do not need it
    from torch import nn


@dataclass(frozen=True)
class PartialFinetuneParams(TrainableParams):
    learning_rate: float = learning_rate_field(5e-5)
    SEARCH = {"learning_rate": Range(1e-5, 5e-4, log=True)}
    frozen_layers: int = field(default=4, metadata={
        "help": "the embeddings and this many lower layers stay frozen (MiniLM has 6: the top 2, the pooler "
                "and the head train)"})

    def __post_init__(self):
        super().__post_init__()
        if self.frozen_layers < 0:
            raise ValueError(f"frozen_layers must be >= 0, got {self.frozen_layers}")


def _layers_and_embeddings(model: nn.Module) -> tuple[nn.ModuleList, nn.Module]:
    backbone = model.base_model
    if hasattr(backbone, "encoder"):                       # BERT-style encoders
        return backbone.encoder.layer, backbone.embeddings
    if hasattr(backbone, "layers"):                        # Llama-style decoders
        return backbone.layers, backbone.embed_tokens
    raise ValueError(f"partial_finetune does not know the layers of {type(backbone).__name__}")


def build(base_dir: Path, head: Head, params: PartialFinetuneParams) -> nn.Module:
    model = head.load(base_dir)
    layers, embeddings = _layers_and_embeddings(model)
    if params.frozen_layers >= len(layers):
        raise ValueError(f"strategies.partial_finetune.frozen_layers={params.frozen_layers} freezes "
                         f"all {len(layers)} layers; use at most {len(layers) - 1}")
    for module in [embeddings, *layers[: params.frozen_layers]]:
        for p in module.parameters():
            p.requires_grad_(False)
    if head.generates:   # an LM head tied to the embeddings is the same tensor: frozen with them
        for p in model.get_output_embeddings().parameters():
            p.requires_grad_(p.requires_grad and p is not embeddings.weight)
    return model


register(Strategy(
    name="partial_finetune",
    summary="top layers + head train, lower layers frozen; saves the trained layers only",
    params_cls=PartialFinetuneParams, trains=True, saves="partial_weights",
    build=build, save=save_trained, load=reload_onto_build(build), tasks=("classification", "generation"),
    packs=True,
))
