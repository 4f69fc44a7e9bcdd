"""Building a model with the `adapters` library: one named adapter (or union), active and
trainable, with the classification head trainable as well."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from tasks.models.loading import load_classifier
from tasks.strategies._trained_weights import unfreeze_head

ADAPTER = "task"


def _uses_prompt_tuning(config) -> bool:
    parts = getattr(config, "configs", [config])   # a ConfigUnion lists its parts
    return any(getattr(c, "architecture", None) == "prompt_tuning" for c in parts)


def build_with_adapter(base_dir: Path, labels: list[str], config) -> nn.Module:
    import adapters

    model = load_classifier(base_dir, labels)
    adapters.init(model)
    # The library knows per model type whether prompt tuning exists (it is off for Llama in
    # adapters 1.3); its own refusal in add_adapter does not say why.
    if _uses_prompt_tuning(config) and not model.base_model.support_prompt_tuning:
        raise ValueError(f"this adapter needs prompt tuning, which the `adapters` library does not "
                         f"support for {model.config.model_type} models; use an encoder base, or run "
                         f"lora and prompt_tuning (PEFT) separately on this base")
    model.add_adapter(ADAPTER, config=config)
    # train_adapter activates the adapter (none is active right after add_adapter) and freezes
    # everything else, including a standard HF head, which we unfreeze on purpose.
    model.train_adapter(ADAPTER)
    unfreeze_head(model)
    return model
