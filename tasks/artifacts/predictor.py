"""The one path from a saved version's folder to answers.

`read_version`: the manifest, its strategy (from the registry) and params, and the base it names
resolved on this machine, before any weight is loaded. `SavedVersion.check_base`: an adapter is
never put on a base whose fingerprint differs from the one it was trained on (BaseModelError,
nothing loaded). `SavedVersion.attach`: the weights, through the strategy's own hook (onto a
shared base in serving, else a model of its own). `load_predictor` does the three in turn.

A version fetched from the registry is read with what the registry recorded about its base when
adaptflow registered it (`RegisteredBase`, from tasks/artifacts/fetch.py): the base is resolved by
the registered name and checked against the registered fingerprint, and a manifest that names
another base or fingerprint is refused. The manifest is the version's own file, so a fingerprint
taken from it alone binds nothing (issue 27, finding 10).
`predict` answers: class probabilities or generated text, as the version's task type says, with
one text check and one generation cap (`Manifest.new_tokens`). Re-scoring in the registry,
serving, the pyfunc and the tests all come through here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.artifacts.manifest import Manifest
from tasks.models.base import BaseModelError, ResolvedBase, check_fingerprint, fingerprint, resolve_base_path
from tasks.models.heads import Head
from tasks.tasktypes import task_type

# torch, pandas and the strategies load when a version does (serving's request checks import this module).
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from torch import nn

    from tasks.strategies.registry import Strategy
    from tasks.strategies.sharing import Attached, SharedBase

# Texts per forward pass when the caller does not say: a classifier's batch is cheap, a generating
# batch holds a KV cache per text.
CLASSIFY_BATCH, GENERATE_BATCH = 64, 16


@dataclass(frozen=True)
class RegisteredBase:
    """The base a registered version goes on, as the registry recorded it at registration:
    `register_best` tags the version `base.registered` = the `base-<name>` model version whose
    `base.name` and `fingerprint` tags adaptflow wrote when it first registered that base."""

    name: str
    fingerprint: str
    where: str           # base-<name>/<version>


@dataclass(frozen=True, kw_only=True)
class SavedVersion:
    """A version's folder, read: what it is and what it needs, before any weight is loaded."""

    folder: Path
    manifest: Manifest
    strategy: Strategy
    params: Any
    base_path: Path      # the base the manifest names (the registered one when known), resolved here
    # What the base's fingerprint must be: the registry's record when the version came from it,
    # else the manifest's.
    expected_fingerprint: str = ""

    @property
    def head(self) -> Head:
        return self.manifest.head

    def check_base(self, base_fingerprint: str | None = None, what: str | None = None) -> ResolvedBase:
        """The base it goes on (whose fingerprint is `base_fingerprint`, hashed from its files when
        not given), or BaseModelError when that is not the base it was trained on. `what` names
        the version in the error."""
        base = ResolvedBase(self.manifest.base_name, self.base_path, base_fingerprint or fingerprint(self.base_path))
        check_fingerprint(self.expected_fingerprint or self.manifest.base_fingerprint, base,
                          what or f"the {self.manifest.strategy} artifact in {self.folder}")
        return base

    def attach(self, shared: SharedBase | None = None, name: str = "") -> Attached:
        """Its weights loaded: on `shared` (a base already in memory, checked with `check_base`
        first) when its strategy can share one, else as a model of its own."""
        return self.strategy.attach(self.base_path, self.folder, self.head, self.params, shared=shared, name=name)


def read_version(folder: Path, registered: RegisteredBase | None = None) -> SavedVersion:
    """The version in `folder`; with `registered` (a version fetched from the registry), bound to
    the base the registry recorded for it (BaseModelError when its manifest names another)."""
    from tasks.strategies import registry

    manifest = Manifest.read(folder)
    if registered is not None:
        bound_problem = base_binding_problem(manifest, registered)
        if bound_problem:
            raise BaseModelError(f"the {manifest.strategy} version in {folder}: {bound_problem}; refused, nothing loaded")
    strategy = registry.get(manifest.strategy, manifest.task)
    return SavedVersion(folder=folder, manifest=manifest, strategy=strategy,
                        params=strategy.parse_params(manifest.params),
                        base_path=resolve_base_path(registered.name if registered else manifest.base_name),
                        expected_fingerprint=registered.fingerprint if registered else manifest.base_fingerprint)


def base_binding_problem(manifest: Manifest, registered: RegisteredBase) -> str | None:
    """Why a manifest does not match the base the registry recorded for its version (None: it does)."""
    if manifest.base_fingerprint != registered.fingerprint:
        return (f"its manifest names base fingerprint {manifest.base_fingerprint[:12]}…, but the registry "
                f"recorded {registered.fingerprint[:12]}… ({registered.where}) when adaptflow registered it")
    if manifest.base_name != registered.name:
        return (f"its manifest names base {manifest.base_name!r}, but the registry recorded {registered.name!r} "
                f"({registered.where}) when adaptflow registered it")
    return None


@dataclass(frozen=True, kw_only=True)
class Predictor:
    """A version ready to answer: its model (in eval mode), the base's tokenizer, its manifest."""

    model: nn.Module
    tokenizer: Any
    manifest: Manifest


def load_predictor(folder: Path) -> Predictor:
    """The version in `folder` loaded on its own, base fingerprint checked first."""
    return load_saved(read_version(folder))


def load_saved(version: SavedVersion) -> Predictor:
    """A version already read (`read_version`) loaded on its own, base fingerprint checked first."""
    from tasks.models.loading import load_tokenizer

    version.check_base()
    return Predictor(model=kept_in_its_precision(version.attach().model(), version),
                     tokenizer=load_tokenizer(version.base_path), manifest=version.manifest)


def kept_in_its_precision(model: nn.Module, version: SavedVersion) -> nn.Module:
    """A trained version that generates in bf16 (its manifest: the precision its run scored it
    in) holds its weights in bf16 from its load on, instead of converting them on every pass
    (115 ms for SmolLM2-135M). Weights it shares convert per pass (tasks/models/precision.py): a
    shared base is other versions' too, and a prompting version prompts the process's one frozen
    LM (tasks/strategies/_prompted_lm.py), which other versions may use in fp32."""
    if version.strategy.trains and version.manifest.generation_precision == "bf16":
        from tasks.models.precision import weights_kept_in

        return weights_kept_in(model, "bf16")
    return model


def text_problem(texts: list[Any]) -> str | None:
    """Why a predictor refuses these texts (None: it takes them): each must be a string with
    more than white space in it."""
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    return f"texts must be non-empty strings; bad at position(s) {bad[:10]}" if bad else None


@dataclass(frozen=True)
class Prediction:
    """One answer per text: class probabilities (columns in `labels` order) or generated outputs."""

    labels: list[str]
    probs: np.ndarray | None = None
    outputs: list[str] | None = None

    def frame(self) -> pd.DataFrame:
        """As the pyfunc returns it: `output`; or `label`, its `probability` and p_<label> for each label."""
        import pandas as pd

        if self.outputs is not None:
            return pd.DataFrame({"output": self.outputs})
        out = pd.DataFrame({"label": [self.labels[i] for i in self.probs.argmax(1)], "probability": self.probs.max(1)})
        for i, label in enumerate(self.labels):
            out[f"p_{label}"] = self.probs[:, i]
        return out


def predict(predictor: Predictor, texts: list[str], *, batch_size: int | None = None,
            max_new_tokens: int | None = None) -> Prediction:
    """The version's answers to `texts` (ValueError when a text is not one, see `text_problem`).
    A generating version writes at most `Manifest.new_tokens(max_new_tokens)` tokens."""
    problem = text_problem(texts)
    if problem:
        raise ValueError(problem)
    m, model, tokenizer = predictor.manifest, predictor.model, predictor.tokenizer
    if task_type(m.task).generates:
        from tasks.evaluation.generate import generate_texts

        out = generate_texts(model, tokenizer, m.prompt(), texts, m.max_length, m.new_tokens(max_new_tokens),
                             batch_size or GENERATE_BATCH, precision=m.generation_precision)
        return Prediction(labels=list(m.labels), outputs=out.texts)
    from tasks.evaluation.predict import predict_proba
    from tasks.models.encoding import encode_requests

    data = encode_requests(model, tokenizer, texts, m.max_length)
    return Prediction(labels=list(m.labels),
                      probs=predict_proba(model, data, tokenizer.pad_token_id, batch_size=batch_size or CLASSIFY_BATCH))
