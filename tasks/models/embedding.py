"""Sentence embeddings with a frozen encoder (MiniLM): unit-length mean-pooled last-layer
states, the way the sentence encoder was trained to be compared. Used by classification's
zero_shot (label prototypes) and by generation's output/reference similarity."""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from tasks.models.loading import load_frozen


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def embed(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Unit-length mean-pooled sentence embeddings."""
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)


@functools.lru_cache(maxsize=1)
def frozen_encoder(base_dir: Path) -> nn.Module:
    """One frozen copy per process (a BERT pooler loads unused: the mean over tokens is the embedding)."""
    from transformers import AutoModel

    return load_frozen(AutoModel, base_dir)
