"""Save exactly the tensors the optimizer updated (adapters, head, unfrozen layers) as one
safetensors file, and load them back onto a model rebuilt the same way from the base.

Used where the library's own saving would not do: the `adapters` library writes PyTorch .bin
by default and leaves a standard HF head out; partial fine-tuning has no library format.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # annotations only: importing torch costs 1 s, and settings do not need it
    from torch import nn

WEIGHTS = "trained_weights.safetensors"
HEADS = ("classifier", "score")   # BERT-style and Llama-style classification heads


def unfreeze_head(model: nn.Module) -> int:
    """Make the classification head trainable (deliberately: some libraries freeze it)."""
    count = 0
    for name, p in model.named_parameters():
        if any(part in HEADS for part in name.split(".")):
            p.requires_grad_(True)
            count += p.numel()
    if count == 0:
        raise ValueError("the model has no classification head named " + " or ".join(HEADS))
    return count


def save_trained(model: nn.Module, out_dir: Path) -> None:
    from safetensors.torch import save_file

    tensors = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    if not tensors:
        raise ValueError("nothing to save: the model has no trainable tensors")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / WEIGHTS))


def load_trained(model: nn.Module, saved_dir: Path) -> nn.Module:
    from safetensors.torch import load_file

    state = load_file(str(saved_dir / WEIGHTS))
    names = dict(model.named_parameters())
    unknown = sorted(set(state) - set(names))
    if unknown:
        raise ValueError(f"{saved_dir / WEIGHTS} holds tensors this model does not have "
                         f"(built with other settings?): {unknown[:5]}")
    expected = sorted(n for n, p in names.items() if p.requires_grad)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(f"{saved_dir / WEIGHTS} lacks trained tensors {missing[:5]}")
    model.load_state_dict(state, strict=False)
    return model.eval()


def reload_onto_build(build):
    """A strategy's `load` for weights saved with `save_trained`: rebuild the model from the base
    with the same params, then put the trained tensors back."""
    def load(base_dir: Path, saved_dir: Path, head, params) -> nn.Module:
        return load_trained(build(base_dir, head, params), saved_dir)
    return load
