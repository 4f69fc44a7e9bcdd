"""Loading registered versions for serving, each base model once.

How a version is held depends on what its strategy saved (its Manifest):
- `shared_peft`: PEFT adapters (LoRA, IA3, prompt/prefix tuning) on one PeftModel per base
  (and PEFT type: PEFT cannot mix types on one model); `set_adapter` picks one per batch, and
  PEFT keeps a trained head per adapter (modules_to_save).
- `shared_adapters`: `adapters`-library adapters (bottleneck, LoRA+prompt, UniPELT; types may
  mix) on one model per base; `set_active_adapters` picks one and its head is copied in
  (2 x 384 weights on MiniLM), because these strategies train a plain HF head.
- `merged`: a version whose strategy has a merge (LoRA, IA3) folded into its own copy of the
  base (params: serving.merged), for the lowest latency at the cost of a base copy.
- `own`: everything else (full and partial fine-tunes, prompting baselines) loads as a model
  of its own through its strategy's `load`.
The base fingerprint in the version's Manifest must equal the fingerprint of the base it is
put on; otherwise BaseModelError, and nothing is changed.
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from tasks.artifacts.manifest import Manifest
from tasks.artifacts.predictor import Predictor, predict

Mode = Literal["shared_peft", "shared_adapters", "merged", "own"]


def serving_mode(strategy_name: str, saves: str, library: str, has_adapter_config: bool, mergeable: bool,
                 model: str, merged: list[str], retrieves: bool = False) -> tuple[Mode, str]:
    """How a version is held, and a note when params asked for something it cannot do.
    `mergeable`: the strategy has a merge (LoRA, IA3); prompts cannot fold into weights.
    `retrieves`: its inputs carry neighbours from its own index, so it is its own module (merged
    when asked: the index stays beside the merged weights)."""
    if retrieves:
        return ("merged", "") if model in merged and mergeable else ("own", "")
    if saves != "adapter":
        return "own", ""
    if model in merged:
        if mergeable:
            return "merged", ""
        note = f"serving.merged names {model}, but {strategy_name} has no merge into the base; served unmerged"
    else:
        note = ""
    if library == "peft":
        return "shared_peft", note
    if library == "adapters" and has_adapter_config:
        return "shared_adapters", note
    return "own", note


class PeftGroup:
    """One base model with any number of PEFT adapters of one type."""

    def __init__(self, base_path: Path, fingerprint: str, head):
        self.base_path, self.fingerprint, self.head = base_path, fingerprint, head
        self.model = None
        self.adapters: set[str] = set()
        self.active: str | None = None

    def attach(self, name: str, folder: Path, strategy, params) -> None:
        from peft import PeftModel

        if self.model is None:
            self.model = PeftModel.from_pretrained(self.head.load(self.base_path), folder, adapter_name=name)
        else:
            self.model.load_adapter(folder, adapter_name=name)
        self.model.eval()   # a new adapter's dropout must be off
        self.adapters.add(name)

    def activate(self, name: str):
        if self.active != name:
            self.model.set_adapter(name)
            self.active = name
        return self.model

    def detach(self, name: str) -> bool:
        """Remove one adapter; True when the group is empty (its base can go)."""
        self.adapters.discard(name)
        if not self.adapters:
            self.model = None
            return True
        if self.active == name:   # never delete the active one (PEFT would pick another and warn)
            self.activate(next(iter(self.adapters)))
        self.model.delete_adapter(name)
        return False


class AdaptersGroup:
    """One base model with any number of `adapters`-library adapters (types may mix)."""

    def __init__(self, base_path: Path, fingerprint: str, labels: list[str]):
        self.base_path, self.fingerprint, self.labels = base_path, fingerprint, labels
        self.model = None
        self.heads: dict[str, dict[str, Any]] = {}
        self.active: str | None = None

    @property
    def adapters(self) -> set[str]:
        return set(self.heads)

    def attach(self, name: str, folder: Path, strategy, params) -> None:
        import adapters
        from safetensors.torch import load_file

        from tasks.models.loading import load_classifier
        from tasks.strategies._adapters_lib import ADAPTER
        from tasks.strategies._trained_weights import HEADS, WEIGHTS

        if self.model is None:
            self.model = load_classifier(self.base_path, self.labels)
            adapters.init(self.model)
        config = strategy.adapter_config(params)
        # Saved tensors name the training adapter `task`; here each version has its own name.
        state = {".".join(name if part == ADAPTER else part for part in key.split(".")): t
                 for key, t in load_file(str(folder / WEIGHTS)).items()}
        head = {k: t for k, t in state.items() if k.split(".")[0] in HEADS}
        body = {k: t for k, t in state.items() if k not in head}
        self.model.add_adapter(name, config=config)
        params_now = dict(self.model.named_parameters())
        expected = {k for k in params_now if name in k.split(".")}
        if set(body) - set(params_now) or expected - set(body) or not head:
            self.model.delete_adapter(name)
            raise ValueError(f"{folder / WEIGHTS} does not match a {strategy.name} adapter built with its "
                             f"saved params (unexpected {sorted(set(body) - set(params_now))[:3]}, "
                             f"missing {sorted(expected - set(body))[:3]})")
        self.model.load_state_dict(body, strict=False)
        self.model.eval()
        self.heads[name] = head

    def activate(self, name: str):
        import torch

        if self.active != name:
            self.model.set_active_adapters(name)
            named = dict(self.model.named_parameters())
            with torch.no_grad():
                for key, tensor in self.heads[name].items():
                    named[key].copy_(tensor)
            self.active = name
        return self.model

    def detach(self, name: str) -> bool:
        self.heads.pop(name, None)
        if not self.heads:
            self.model = None
            return True
        self.model.delete_adapter(name)
        if self.active == name:
            self.active = None
        return False


@dataclass(eq=False)
class Loaded:
    """One registered version held in memory."""

    model: str
    version: str
    manifest: Manifest
    mode: Mode
    base_path: Path
    base_fingerprint: str
    tokenizer: Any
    group: PeftGroup | AdaptersGroup | None = None
    group_id: str = ""
    adapter: str | None = None     # its name inside the group
    module: Any = None             # own and merged versions
    load_seconds: float = 0.0
    note: str = ""
    loaded_at: float = field(default_factory=time.time)

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.version)

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "strategy": self.manifest.strategy,
                "mode": self.mode, "base": self.manifest.base_name,
                "base_fingerprint": self.base_fingerprint[:12], "shared_base": self.group_id or None,
                "labels": self.manifest.labels, "load_seconds": round(self.load_seconds, 3),
                **({"note": self.note} if self.note else {})}


class Pool:
    def __init__(self, merged: list[str], on_inference_thread: Callable[[Callable[[], Any]], Any]):
        self._merged = list(merged)
        self._call = on_inference_thread      # runs a change to a shared model between batches
        self._groups: dict[tuple, PeftGroup | AdaptersGroup] = {}
        self._group_ids: dict[tuple, str] = {}
        self._tokenizers: dict[Path, Any] = {}
        self._names = itertools.count(1)
        self._load_lock = threading.Lock()    # one load at a time: no two threads build one group

    def groups(self) -> dict[str, list[str]]:
        return {self._group_ids[k]: sorted(g.adapters) for k, g in self._groups.items()}

    def load(self, model: str, version: str, folder: Path) -> Loaded:
        """Load a version (off the inference thread; only the attach to a live shared base
        runs on it). Raises BaseModelError on a fingerprint mismatch."""
        from tasks.models.base import ResolvedBase, check_fingerprint, fingerprint, resolve_base_path
        from tasks.strategies import registry

        start = time.perf_counter()
        manifest = Manifest.read(folder)
        strategy = registry.get(manifest.strategy, manifest.task)
        params = strategy.parse_params(manifest.params)
        base_path = resolve_base_path(manifest.base_name)
        has_config = strategy.adapter_config is not None
        mode, note = serving_mode(strategy.name, strategy.saves, strategy.library, has_config,
                                  strategy.merge is not None, model, self._merged, strategy.retrieves)
        what = f"{model} v{version} ({strategy.name})"
        with self._load_lock:
            if mode in ("shared_peft", "shared_adapters"):
                group_key = (mode, str(base_path), _peft_type(folder) if mode == "shared_peft" else "",
                             manifest.head)
                group = self._groups.get(group_key)
                fp = group.fingerprint if group else fingerprint(base_path)
                check_fingerprint(manifest.base_fingerprint, ResolvedBase(manifest.base_name, base_path, fp), what)
                name = f"a{next(self._names)}"   # valid as a module name, unique per process
                self._group_ids.setdefault(group_key, f"{mode}:{Path(manifest.base_name).name}:{len(self._group_ids) + 1}")
                if group is None:   # not visible to the inference thread yet: build it here
                    group = (PeftGroup(base_path, fp, manifest.head) if mode == "shared_peft"
                             else AdaptersGroup(base_path, fp, manifest.labels))
                    group.attach(name, folder, strategy, params)
                    self._groups[group_key] = group
                else:
                    def attach(group=group):
                        group.attach(name, folder, strategy, params)
                        self._groups[group_key] = group   # again, in case its last adapter just left
                    self._call(attach)
                loaded = Loaded(model, version, manifest, mode, base_path, fp, self._tokenizer(base_path),
                                group=group, group_id=self._group_ids[group_key], adapter=name)
            else:
                fp = fingerprint(base_path)
                check_fingerprint(manifest.base_fingerprint, ResolvedBase(manifest.base_name, base_path, fp), what)
                module = strategy.load(base_path, folder, manifest.head, params)
                if mode == "merged":   # a merged copy; the adapter model is dropped right after
                    module = strategy.merge(module)
                loaded = Loaded(model, version, manifest, mode, base_path, fp, self._tokenizer(base_path),
                                module=module.eval())
        loaded.load_seconds, loaded.note = time.perf_counter() - start, note
        return loaded

    def unload(self, loaded: Loaded) -> None:
        """Free a version (on the inference thread, between batches)."""
        if loaded.group is not None:
            if loaded.group.detach(loaded.adapter):
                for k, g in list(self._groups.items()):
                    if g is loaded.group:
                        del self._groups[k]
        loaded.module = loaded.group = None

    def generate(self, loaded: Loaded, texts: list[str], batch_size: int, max_new_tokens: int) -> list[str]:
        """Greedy outputs, one per text, with the version's own prompt (on the inference thread)."""
        return predict(self._predictor(loaded), texts, batch_size=batch_size, max_new_tokens=max_new_tokens).outputs

    def predict(self, loaded: Loaded, texts: list[str], batch_size: int) -> np.ndarray:
        """Class probabilities, one row per text (on the inference thread)."""
        return predict(self._predictor(loaded), texts, batch_size=batch_size).probs

    @staticmethod
    def _predictor(loaded: Loaded) -> Predictor:
        model = loaded.group.activate(loaded.adapter) if loaded.group is not None else loaded.module
        return Predictor(model=model, tokenizer=loaded.tokenizer, manifest=loaded.manifest)

    def _tokenizer(self, base_path: Path):
        from tasks.models.loading import load_tokenizer

        if base_path not in self._tokenizers:
            self._tokenizers[base_path] = load_tokenizer(base_path)
        return self._tokenizers[base_path]


def _peft_type(folder: Path) -> str:
    import json

    return json.loads((folder / "adapter_config.json").read_text()).get("peft_type", "")
