"""Strategies built with the `adapters` library: one named adapter (or union), active and
trainable, with the classification head trainable as well; saved as safetensors (the library's
own save writes .bin and leaves a standard head out); versions share one base in memory
(`adapters_sharing`)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tasks.models.heads import Head
from tasks.strategies._trained_weights import HEADS, WEIGHTS, reload_onto_build, save_trained, unfreeze_head
from tasks.strategies.registry import Strategy
from tasks.strategies.sharing import Attached, SharedBase, Sharing

if TYPE_CHECKING:   # annotations only: importing torch costs 1 s, and settings do not need it
    from torch import nn

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


def adapters_sharing(strategy_name: str, adapter_config: Callable[[Any], Any]) -> Sharing:
    """Versions of any `adapters` config share one base (the library mixes types): each is added
    under its own name from its saved tensors, and its head (a plain HF head, which the library
    does not keep per adapter) is copied in when it is switched to (2 x 384 weights on MiniLM)."""
    def attach(shared: SharedBase, saved_dir: Path, params, name: str) -> Attached:
        import adapters

        if shared.model is None:
            shared.model = shared.head.load(shared.base.path)
            adapters.init(shared.model)
        model = shared.model
        head, body = _saved_tensors(saved_dir, name)
        model.add_adapter(name, config=adapter_config(params))
        params_now = dict(model.named_parameters())
        expected = {k for k in params_now if name in k.split(".")}
        if set(body) - set(params_now) or expected - set(body) or not head:
            model.delete_adapter(name)
            raise ValueError(f"{saved_dir / WEIGHTS} does not match a {strategy_name} adapter built with its "
                             f"saved params (unexpected {sorted(set(body) - set(params_now))[:3]}, "
                             f"missing {sorted(expected - set(body))[:3]})")
        model.load_state_dict(body, strict=False)
        model.eval()
        return Attached(name=name, shared=shared, switch=lambda: _switch(model, name, head),
                        remove=lambda: model.delete_adapter(name))

    return Sharing(kind="adapters", key=lambda saved_dir, params: "", attach=attach)


def _saved_tensors(saved_dir: Path, name: str) -> tuple[dict, dict]:
    """(head, adapter) tensors of a version saved by `save_trained`. They name the training
    adapter `task`; on a shared base each version has its own name."""
    from safetensors.torch import load_file

    state = {".".join(name if part == ADAPTER else part for part in key.split(".")): t
             for key, t in load_file(str(saved_dir / WEIGHTS)).items()}
    head = {k: t for k, t in state.items() if k.split(".")[0] in HEADS}
    return head, {k: t for k, t in state.items() if k not in head}


def _switch(model: nn.Module, name: str, head: dict) -> None:
    import torch

    model.set_active_adapters(name)
    named = dict(model.named_parameters())
    with torch.no_grad():
        for key, tensor in head.items():
            named[key].copy_(tensor)


def adapters_strategy(name: str, summary: str, params_cls: type, adapter_config: Callable[[Any], Any]) -> Strategy:
    """The strategy for one `adapters` config: `adapter_config(params)` is all that differs
    between bottleneck adapters, the LoRA + prompt hybrid and UniPELT."""
    def build(base_dir: Path, head: Head, params) -> nn.Module:
        return build_with_adapter(base_dir, head, adapter_config(params))

    return Strategy(name=name, summary=summary, params_cls=params_cls, trains=True, saves="adapter", build=build,
                    save=save_trained, load=reload_onto_build(build), library="adapters",
                    sharing=adapters_sharing(name, adapter_config))
