"""A batch's loss: cross-entropy over class ids (one per example) or, for generation, over the
target tokens of each (prompt, target) row (-100 = no loss).

Generation runs the LM head only where a target token is predicted (`forward_loss`,
tasks/models/lm_head.py): on a headlines batch about 12 of a row's ~130 positions; the others'
gradients were exact zeros. The loss and gradients are the full-logits ones up to float rounding
(tests/test_generation.py)."""
from __future__ import annotations

import torch
from torch import nn

from tasks.models.lm_head import head_at, output_head


def batch_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of one batch from full logits. Class ids (one per example): over the classes.
    Token ids per position (generation, -100 = no loss): next-token prediction on the target
    tokens only; the logits may start with positions the labels lack (PEFT prompt tuning's
    virtual tokens), so the last labels.shape[1] positions are the ones that line up."""
    if labels.dim() == 1:
        return nn.functional.cross_entropy(logits.float(), labels, reduction=reduction)
    logits = logits[:, -labels.shape[1]:-1]
    return nn.functional.cross_entropy(logits.float().flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100,
                                       reduction=reduction)


def loss_count(labels: torch.Tensor) -> int:
    """How many predictions a batch's loss averages over: examples, or target tokens."""
    return len(labels) if labels.dim() == 1 else int((labels[:, 1:] != -100).sum())


def forward_loss(wrapped: nn.Module, model: nn.Module, inputs: dict, labels: torch.Tensor,
                 reduction: str = "mean") -> torch.Tensor:
    """The loss of one forward pass of `wrapped` (the model as accelerate prepared it; `model` is
    the model itself). Token labels: the LM head sees only the positions whose next label is a
    target token, in row-major order, which is the order of the targets picked below."""
    if labels.dim() == 1 or output_head(model) is None:   # classification, or no LM head to narrow
        return batch_loss(wrapped(**inputs).logits, labels, reduction)
    predicts = labels[:, 1:] != -100                      # position t predicts label t + 1
    with head_at(model, nn.functional.pad(predicts, (0, 1))):   # the last position predicts nothing
        logits = wrapped(**inputs).logits
    return nn.functional.cross_entropy(logits.float(), labels[:, 1:][predicts], reduction=reduction)
