"""Building a model with the `adapters` library: one named adapter (or union), active and
trainable, with the classification head trainable as well."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from tasks.base_model import load_classifier
from tasks.strategies._trained_weights import unfreeze_head

ADAPTER = "task"


def build_with_adapter(base_dir: Path, labels: list[str], config) -> nn.Module:
    import adapters

    model = load_classifier(base_dir, labels)
    adapters.init(model)
    model.add_adapter(ADAPTER, config=config)
    # train_adapter activates the adapter (none is active right after add_adapter) and freezes
    # everything else, including a standard HF head, which we unfreeze on purpose.
    model.train_adapter(ADAPTER)
    unfreeze_head(model)
    return model
