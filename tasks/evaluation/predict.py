"""Predict a split in input order, with length-sorted batches to keep padding small."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tasks.models.encoding import Encoded, batches, on_device


@torch.no_grad()
def predict_proba(model: nn.Module, data: Encoded, pad_id: int, batch_size: int = 64) -> np.ndarray:
    model.eval()
    out: np.ndarray | None = None
    for idx, inputs, _ in batches(data, batch_size, pad_id):
        probs = torch.softmax(model(**on_device(inputs, model)).logits.float(), dim=-1).cpu().numpy()
        if out is None:
            out = np.zeros((len(data), probs.shape[1]), dtype=np.float32)
        out[idx] = probs
    if out is None:
        raise ValueError("cannot predict an empty split")
    return out
