"""Strategies built with the `adapters` library: one named adapter (or union), active and
trainable, with the classification head trainable as well; saved as safetensors (the library's
own save writes .bin and leaves a standard head out)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from torch import nn

from tasks.models.heads import Head
from tasks.strategies._trained_weights import reload_onto_build, save_trained, unfreeze_head
from tasks.strategies.registry import Strategy

ADAPTER = "task"


def _uses_prompt_tuning(config) -> bool:
    parts = getattr(config, "configs", [config])   # a ConfigUnion lists its parts
    return any(getattr(c, "architecture", None) == "prompt_tuning" for c in parts)


def build_with_adapter(base_dir: Path, head: Head, config) -> nn.Module:
    import adapters

    model = head.load(base_dir)
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


def adapters_strategy(name: str, summary: str, params_cls: type, adapter_config: Callable[[Any], Any]) -> Strategy:
    """The strategy for one `adapters` config: `adapter_config(params)` is all that differs
    between bottleneck adapters, the LoRA + prompt hybrid and UniPELT."""
    def build(base_dir: Path, head: Head, params) -> nn.Module:
        return build_with_adapter(base_dir, head, adapter_config(params))

    return Strategy(name=name, summary=summary, params_cls=params_cls, trains=True, saves="adapter", build=build,
                    save=save_trained, load=reload_onto_build(build), library="adapters",
                    adapter_config=adapter_config)
