"""Loading registered versions for serving, each base model once.

How a version is held depends on what its strategy declares (tasks/strategies/registry.py):
- `shared_<kind>`: a strategy with `sharing` (PEFT adapters of one type, `adapters`-library
  adapters of any type) attaches each version to one base in memory per base, head and share
  key; switching between versions is the strategy's own step, run between batches.
- `merged`: a version whose strategy has a merge (LoRA, IA3) folded into its own copy of the
  base (params: serving.merged), for the lowest latency at the cost of a base copy.
  Versions whose strategy mixes (LoRA: `Sharing.mixes`) answer requests for several of them
  in one forward pass (`predict_mixed`, PEFT's `adapter_names=`), no switch at all.
- `own`: everything else (full and partial fine-tunes, prompting baselines, `+retrieval`
  variants) loads as a model of its own through its strategy's `attach`.
Serving knows no library's files or tensor names: the version is read and its base fingerprint
checked by tasks/artifacts (a mismatch is a BaseModelError, and nothing is changed), and its
weights go where its strategy's `attach` puts them.
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tasks.artifacts.manifest import Manifest
from tasks.artifacts.predictor import (
    Predictor,
    RegisteredBase,
    SavedVersion,
    kept_in_its_precision,
    predict,
    read_version,
)
from tasks.models.base import ResolvedBase, fingerprint
from tasks.strategies.registry import Strategy
from tasks.strategies.sharing import Attached, SharedBase
from tasks.tasktypes import task_type

OWN, MERGED = "own", "merged"


def serving_mode(strategy: Strategy, *, model: str, merged: list[str], bf16: bool = False) -> tuple[str, str]:
    """How a version of `strategy` is held (own, merged or shared_<kind>) when it serves `model`,
    and a note when params asked for something it cannot do. `merged`: serving.merged, the models
    whose versions fold their adapter into the base when their strategy has a merge; prompts
    cannot fold into weights, nor an adapter into weights a version generates with in bf16
    (`bf16`: rounded to bf16, a merged weight loses most of a small update, which the run's
    unmerged adapter kept). A retrieving version declares no sharing: its own module (merged
    when asked: the index stays beside the merged weights)."""
    mergeable = strategy.merge is not None
    if strategy.saves != "adapter":
        return OWN, ""
    note = ""
    if model in merged:
        if mergeable and not bf16:
            return MERGED, ""
        why = (f"this {strategy.name} version generates in bf16 (generation.precision), where a merged weight "
               f"would round its adapter away") if mergeable else f"{strategy.name} has no merge into the base"
        note = f"serving.merged names {model}, but {why}; served unmerged"
    return (OWN if strategy.sharing is None else f"shared_{strategy.sharing.kind}"), note


@dataclass(eq=False, kw_only=True)
class Loaded:
    """One registered version held in memory."""

    model: str
    version: str
    manifest: Manifest
    mode: str
    base: ResolvedBase             # the base it answers on (its fingerprint checked against the version's)
    tokenizer: Any
    attached: Attached | None      # None once unloaded
    group_id: str = ""             # the shared base it is on
    mix: str = ""                  # versions with equal non-empty keys answer in one forward pass
    forward_mixed: Callable | None = None   # the strategy's pass over rows for several versions
    load_seconds: float = 0.0
    note: str = ""
    loaded_at: float = field(default_factory=time.time)

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.version)

    @property
    def group(self) -> SharedBase | None:
        return self.attached.shared if self.attached is not None else None

    @property
    def adapter(self) -> str | None:
        """Its name on the shared base."""
        return self.attached.name if self.group is not None else None

    def predictor(self) -> Predictor:
        """The version ready to answer (a shared base switched to it): on the inference thread."""
        return Predictor(model=self.attached.model(), tokenizer=self.tokenizer, manifest=self.manifest)

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "strategy": self.manifest.strategy,
                "mode": self.mode, "base": self.manifest.base_name,
                "base_fingerprint": self.base.fingerprint[:12], "shared_base": self.group_id or None,
                "labels": self.manifest.labels, "load_seconds": round(self.load_seconds, 3),
                **({"note": self.note} if self.note else {})}


class Pool:
    def __init__(self, merged: list[str], on_inference_thread: Callable[[Callable[[], Any]], Any],
                 mixed_batches: bool = True):
        self._merged = list(merged)
        self._mixed_batches = mixed_batches   # serving.mixed_batches
        self._call = on_inference_thread      # runs a change to a shared model between batches
        self._shared: dict[tuple, SharedBase] = {}
        self._group_ids: dict[tuple, str] = {}
        self._tokenizers: dict[Path, Any] = {}
        # A base's fingerprint hashes all its weight files (MiniLM: 90 MB): once per base, not per version.
        self._fingerprints: dict[Path, str] = {}
        self._names = itertools.count(1)
        self._load_lock = threading.Lock()    # one load at a time: no two threads build one shared base

    def groups(self) -> dict[str, list[str]]:
        return {self._group_ids[k]: sorted(s.versions) for k, s in self._shared.items()}

    def load(self, model: str, version: str, folder: Path, registered: RegisteredBase | None = None) -> Loaded:
        """Load a version (off the inference thread; only the attach to a live shared base
        runs on it), bound to the base the registry `registered` for it. Raises BaseModelError
        on a fingerprint mismatch."""
        start = time.perf_counter()
        saved = read_version(folder, registered)
        mode, note = serving_mode(saved.strategy, model=model, merged=self._merged,
                                  bf16=saved.manifest.generation_precision == "bf16")
        what = f"{model} v{version} ({saved.strategy.name})"
        with self._load_lock:
            if mode in (OWN, MERGED):
                base = saved.check_base(self._fingerprint(saved.base_path), what)
                attached, group_id = saved.attach(), ""
                if mode == MERGED:   # a merged copy; the adapter model is dropped right after
                    attached = Attached(own=saved.strategy.merge(attached.model()).eval())
                kept_in_its_precision(attached.model(), saved)
            else:
                attached, base, group_id = self._attach_shared(saved, mode, what)
            tokenizer = self._tokenizer(saved.base_path)
        # Mixed only with versions read the same way (max_length) on the same base, classifying.
        mixes = (group_id and self._mixed_batches and not task_type(saved.manifest.task).generates
                 and saved.strategy.mixes(saved.folder, saved.params))
        return Loaded(model=model, version=version, manifest=saved.manifest, mode=mode, base=base, tokenizer=tokenizer,
                      attached=attached, group_id=group_id, load_seconds=time.perf_counter() - start, note=note,
                      mix=f"{group_id}/{saved.manifest.max_length}" if mixes else "",
                      forward_mixed=saved.strategy.sharing.forward_mixed if mixes else None)

    def _attach_shared(self, saved: SavedVersion, mode: str, what: str) -> tuple[Attached, ResolvedBase, str]:
        """The version on the shared base of its base, head and share key (built here when there is
        none yet: nothing else sees it until it is stored); (its handle, the base, the group's id)."""
        key = (str(saved.base_path), saved.head, saved.strategy.share_key(saved.folder, saved.params))
        shared = self._shared.get(key)
        base = saved.check_base(shared.base.fingerprint if shared else self._fingerprint(saved.base_path), what)
        name = f"a{next(self._names)}"   # valid as a module name, unique per process
        group_id = self._group_ids.setdefault(key, f"{mode}:{Path(saved.manifest.base_name).name}:"
                                                   f"{len(self._group_ids) + 1}")
        if shared is None:   # not visible to the inference thread yet: build it here
            shared = SharedBase(base=base, head=saved.head, kind=saved.strategy.sharing.kind)
            attached = saved.attach(shared, name)
            self._shared[key] = shared
            return attached, base, group_id

        def attach(shared=shared) -> Attached:
            attached = saved.attach(shared, name)
            self._shared[key] = shared   # again, in case its last version just left
            return attached
        return self._call(attach), base, group_id

    def unload(self, loaded: Loaded) -> None:
        """Free a version (on the inference thread, between batches)."""
        shared = loaded.group
        if loaded.attached is not None and loaded.attached.detach() and shared is not None:
            for k, s in list(self._shared.items()):   # its last version left: the base goes
                if s is shared:
                    del self._shared[k]
        loaded.attached = None

    def generate(self, loaded: Loaded, texts: list[str], batch_size: int, max_new_tokens: int) -> list[str]:
        """Greedy outputs, one per text, with the version's own prompt (on the inference thread)."""
        return predict(loaded.predictor(), texts, batch_size=batch_size, max_new_tokens=max_new_tokens).outputs

    def predict(self, loaded: Loaded, texts: list[str], batch_size: int) -> np.ndarray:
        """Class probabilities, one row per text (on the inference thread)."""
        return predict(loaded.predictor(), texts, batch_size=batch_size).probs

    def predict_mixed(self, items: list[tuple[Loaded, list[str]]], batch_size: int) -> list[np.ndarray]:
        """Class probabilities for requests to several versions with one `mix` key, computed in
        shared forward passes where each text goes through its own version's adapter and head
        (PEFT's mixed adapter batches); one array per item (on the inference thread)."""
        import torch

        from tasks.evaluation.predict import ensure_eval, probabilities
        from tasks.models.encoding import batches, encode_requests, on_device

        first = items[0][0]
        if not first.mix or any(loaded.mix != first.mix or loaded.attached is None for loaded, _ in items):
            raise ValueError("predict_mixed takes loaded versions of one mix key only")
        model, tokenizer = first.group.model, first.tokenizer
        texts = [t for _, ts in items for t in ts]
        names = [loaded.adapter for loaded, ts in items for _ in ts]
        data = encode_requests(model, tokenizer, texts, first.manifest.max_length)
        out = np.zeros((len(texts), len(first.manifest.labels)), dtype=np.float32)
        ensure_eval(model)
        with torch.no_grad():
            for idx, inputs, _ in batches(data, batch_size, tokenizer.pad_token_id):
                logits = first.forward_mixed(model, on_device(inputs, model), [names[i] for i in idx]).logits
                out[idx] = probabilities(logits)
        bounds = np.cumsum([0] + [len(ts) for _, ts in items])
        return [out[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def _fingerprint(self, base_path: Path) -> str:
        if base_path not in self._fingerprints:
            self._fingerprints[base_path] = fingerprint(base_path)
        return self._fingerprints[base_path]

    def _tokenizer(self, base_path: Path):
        from tasks.models.loading import load_tokenizer

        if base_path not in self._tokenizers:
            self._tokenizers[base_path] = load_tokenizer(base_path)
        return self._tokenizers[base_path]
