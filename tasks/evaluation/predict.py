"""Predict a split in input order, with length-sorted batches to keep padding small."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tasks.models.encoding import Encoded, batches, on_device


def probabilities(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.float(), dim=-1).cpu().numpy()


def ensure_eval(model: nn.Module) -> nn.Module:
    """`model` in eval mode, walked only when its root is not: `eval()` visits every module, which
    serving paid on every pass (MiniLM, AMD EPYC: 1.0 ms with one LoRA version on the base, 5.6 ms
    with 32 held, against a 15 ms batch-1 forward). Loading and attaching leave a model in eval
    mode (the strategies' `load`/`attach` call eval() after adding modules), so a root in eval
    mode means the whole model is; a model fresh from training has its root in train mode."""
    if model.training:
        model.eval()
    return model


@torch.no_grad()
def predict_rows(model: nn.Module, data: Encoded, pad_id: int, rows, batch_size: int = 64) -> np.ndarray:
    """`rows(model inputs)` -> one float32 row per example, for every example of `data`, in input order."""
    ensure_eval(model)
    out: np.ndarray | None = None
    for idx, inputs, _ in batches(data, batch_size, pad_id):
        values = rows(on_device(inputs, model))
        if out is None:
            out = np.zeros((len(data), values.shape[1]), dtype=np.float32)
        out[idx] = values
    if out is None:
        raise ValueError("cannot predict an empty split")
    return out


def predict_proba(model: nn.Module, data: Encoded, pad_id: int, batch_size: int = 64) -> np.ndarray:
    return predict_rows(model, data, pad_id, lambda inputs: probabilities(model(**inputs).logits), batch_size)
