"""Saving and reloading PEFT models: adapter weights and the trained head, as safetensors."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from tasks.models.loading import load_classifier


def save_peft(model: nn.Module, out_dir: Path) -> None:
    # PEFT's SEQ_CLS task puts the classifier in modules_to_save, so the trained head is in
    # adapter_model.safetensors next to the adapter; base weights are not.
    model.save_pretrained(out_dir, safe_serialization=True)


def load_peft(base_dir: Path, saved_dir: Path, labels: list[str], params) -> nn.Module:
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_classifier(base_dir, labels), saved_dir)
    return model.eval()


def merge_peft(model: nn.Module) -> nn.Module:
    """A copy with the adapter folded into the base weights (LoRA: W + BA * alpha/r; IA3: W
    scaled), the trained head in place, and no PEFT wrapper left."""
    import copy

    return copy.deepcopy(model).merge_and_unload().eval()
