"""Strategies built with PEFT: the base with a fresh head, wrapped by `get_peft_model`; saved and
reloaded as adapter weights plus the trained head (safetensors); LoRA and IA3 also merge; versions
of one PEFT type share one base in memory (`attach_peft`)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tasks.models.heads import Head
from tasks.strategies.registry import Strategy
from tasks.strategies.sharing import Attached, SharedBase, Sharing
from tasks.tasktypes import DEFAULT

if TYPE_CHECKING:   # annotations only: importing torch costs 1 s, and settings do not need it
    from torch import nn


def task_type(head: Head):
    """PEFT's TaskType for the head."""
    from peft import TaskType

    return TaskType[head.peft_task_type]


def save_peft(model: nn.Module, out_dir: Path) -> None:
    # PEFT's SEQ_CLS task puts the classifier in modules_to_save, so the trained head is in
    # adapter_model.safetensors next to the adapter; base weights are not.
    model.save_pretrained(out_dir, safe_serialization=True)


def load_peft(base_dir: Path, saved_dir: Path, head: Head, params) -> nn.Module:
    from peft import PeftModel

    model = PeftModel.from_pretrained(head.load(base_dir), saved_dir)
    return model.eval()


def peft_type(saved_dir: Path, params) -> str:
    """The saved adapter's PEFT type (LORA, IA3, ...): one PeftModel holds adapters of one type only."""
    from peft import PeftConfig

    return str(PeftConfig.from_pretrained(str(saved_dir)).peft_type)


def attach_peft(shared: SharedBase, saved_dir: Path, params, name: str) -> Attached:
    """The saved adapter (and the head PEFT saved with it, modules_to_save) on the shared base:
    the first one wraps the base in a PeftModel, the next ones load beside it; `set_adapter`
    switches between them."""
    from peft import PeftModel

    if shared.model is None:
        shared.model = PeftModel.from_pretrained(shared.head.load(shared.base.path), saved_dir, adapter_name=name)
    else:
        shared.model.load_adapter(saved_dir, adapter_name=name)
    shared.model.eval()   # a new adapter's dropout must be off
    from tasks.strategies._lora_mixed import install

    install(shared.model)   # mixed passes: one batched product per LoRA layer, not one per version
    return Attached(name=name, shared=shared, switch=lambda: shared.model.set_adapter(name),
                    remove=lambda: shared.model.delete_adapter(name))


# PEFT's mixed adapter batches (`adapter_names=`, tuners/lora/model.py) exist for LoRA layers and
# the saved head (modules_to_save); IA3 and prompt/prefix tuning have none in PEFT 0.21.2.
def forward_mixed(model: nn.Module, inputs: dict, names: list[str]):
    """Each row through its own adapter (and its own saved head), in one pass."""
    return model(**inputs, adapter_names=names)


SHARING = Sharing(kind="peft", key=peft_type, attach=attach_peft, mixes=lambda key: key.rsplit(".", 1)[-1] == "LORA",
                  forward_mixed=forward_mixed)


def merge_peft(model: nn.Module) -> nn.Module:
    """A copy with the adapter folded into the base weights (LoRA: W + BA * alpha/r; IA3: W
    scaled), the trained head in place, and no PEFT wrapper left."""
    import copy

    return copy.deepcopy(model).merge_and_unload().eval()


def peft_strategy(name: str, summary: str, params_cls: type, peft_config: Callable[[Path, Any, Head], Any],
                  mergeable: bool = False, tasks: tuple[str, ...] = (DEFAULT,)) -> Strategy:
    """The strategy for one PEFT config: `peft_config(base_dir, params, head)` is all that
    differs between LoRA, IA3, prompt and prefix tuning (a prompt initialised from text reads the
    base's tokenizer, and by default states the head's task). `mergeable`: the adapter folds into
    the base weights (LoRA, IA3). PEFT's task type follows the head (`task_type`): SEQ_CLS saves
    the new head with the adapter, CAUSAL_LM keeps the LM head and prepends virtual tokens'
    positions to the labels."""
    def build(base_dir: Path, head: Head, params) -> nn.Module:
        from peft import get_peft_model

        return get_peft_model(head.load(base_dir), peft_config(base_dir, params, head))

    return Strategy(name=name, summary=summary, params_cls=params_cls, trains=True, saves="adapter", build=build,
                    save=save_peft, load=load_peft, library="peft", merge=merge_peft if mergeable else None,
                    tasks=tasks, sharing=SHARING, packs=mergeable)   # mergeable: LoRA, IA3 (no virtual tokens)
