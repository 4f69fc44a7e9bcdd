"""Running a causal LM's output head on fewer positions. SmolLM2's head is a 576 x 49,152
matrix: a forward pass multiplies every position by it and writes 49,152 logits per position
(200 MB in fp32 for 8 rows of 130 tokens), while training reads ~10 % of them (the target
tokens) and feature extraction none. A forward pre-hook narrows what the head receives, for one
block; the model's own code and PEFT's wrappers run unchanged around it."""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import ContextManager, Iterator

import torch
from torch import nn


def output_head(model: nn.Module) -> nn.Module | None:
    """The model's LM head, or None (a classifier, a model without one; the `adapters` library
    gives a list for several active heads: not narrowed)."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    return head if isinstance(head, nn.Module) else None


def head_at(model: nn.Module, keep: torch.Tensor | None) -> ContextManager[None]:
    """Within the block the model's head sees only the positions `keep` marks (rows x positions,
    bool) as an (n, hidden) matrix, so `.logits` is (n, vocab) in row-major order; `keep=None`:
    no position (hidden states only). Leading positions `keep` lacks (prompt tuning's virtual
    tokens) are never kept. A model without a head runs as it is."""
    head = output_head(model)
    return nullcontext() if head is None else _narrowed(head, keep)


@contextmanager
def _narrowed(head: nn.Module, keep: torch.Tensor | None) -> Iterator[None]:
    def narrow(_module, args):
        hidden = args[0]
        if keep is None:
            return (hidden[:, :0], *args[1:])
        extra = hidden.shape[1] - keep.shape[1]
        mask = nn.functional.pad(keep, (extra, 0)) if extra else keep
        return (hidden[mask.to(hidden.device)], *args[1:])

    handle = head.register_forward_pre_hook(narrow)
    try:
        yield
    finally:
        handle.remove()
