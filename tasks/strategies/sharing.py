"""Many saved versions on one base model in memory (serving), the strategy contract's `attach`.

A strategy whose versions can share a base declares `Sharing` (registry.py): a `kind` (which
library's shared base it is), a `key` (versions with equal keys may go on one base: PEFT cannot
mix adapter types on one model) and `attach` (put one saved version on a `SharedBase`, under a
name). Strategies without it (full and partial fine-tunes, prompting baselines, the `+retrieval`
variants) load a model of their own. Either way the caller holds an `Attached`: `model()` is the
model answering as that version (a shared base is switched to it first), `detach()` takes it
off again. The caller never reads a library's files or tensor names; the strategy does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tasks.models.base import ResolvedBase
from tasks.models.heads import Head

if TYPE_CHECKING:   # annotations only: importing torch costs 1 s, and settings do not need it
    from torch import nn


@dataclass(eq=False)
class SharedBase:
    """One base model in memory and the versions attached to it, by name. `model` is what the
    attaching library made of the base (PEFT wraps it, `adapters` adds its hooks): None until the
    first version attaches. `base` carries the fingerprint every version is checked against."""

    base: ResolvedBase
    head: Head
    kind: str
    model: nn.Module | None = None
    versions: dict[str, "Attached"] = field(default_factory=dict)
    active: str | None = None

    def add(self, attached: "Attached") -> "Attached":
        self.versions[attached.name] = attached
        return attached


@dataclass(eq=False)
class Attached:
    """One saved version in memory: under `name` on `shared`, or (shared None) the model `own`.
    `switch` and `remove` are the library's own steps: make the shared model answer as this
    version; take this version off the shared model."""

    name: str = ""
    own: nn.Module | None = None
    shared: SharedBase | None = None
    switch: Callable[[], None] | None = None
    remove: Callable[[], None] | None = None

    def model(self) -> nn.Module:
        """The model answering as this version (a shared base is switched to it when another was active)."""
        if self.shared is None:
            return self.own
        if self.shared.active != self.name:
            self.switch()
            self.shared.active = self.name
        return self.shared.model

    def detach(self) -> bool:
        """Take it off; True when nothing is left on the base it used (the base can go)."""
        shared = self.shared
        if shared is None:
            self.own = None
            return True
        shared.versions.pop(self.name, None)
        if not shared.versions:
            shared.model = shared.active = None
            return True
        if shared.active == self.name:   # never remove the active one (PEFT would pick another and warn)
            next(iter(shared.versions.values())).model()
        self.remove()
        return False


@dataclass(frozen=True)
class Sharing:
    """How a strategy's saved versions share one base in memory."""

    kind: str                                    # the library: "peft", "adapters"
    # key(saved_dir, params): versions with equal keys (on the same base, with the same head) may share it
    key: Callable[[Path, Any], str]
    # attach(shared, saved_dir, params, name) -> the version on `shared` under `name` (the contract's
    # Strategy.attach records it on `shared`); raises when the saved files do not fit the strategy's
    # params (the versions already on `shared` keep answering)
    attach: Callable[[SharedBase, Path, Any, str], Attached]
    # mixes(key): versions under this share key can answer in one forward pass, each request by
    # its own version (PEFT's mixed adapter batches: `adapter_names=` in forward, LoRA only in
    # PEFT 0.21). Others are served one version per batch, switched between batches.
    mixes: Callable[[str], bool] = lambda key: False
    # forward_mixed(shared model, inputs, names): one forward pass where row i answers as the version
    # attached under names[i] (only for keys that mix).
    forward_mixed: Callable[[nn.Module, dict, list[str]], Any] | None = None
