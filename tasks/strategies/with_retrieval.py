"""Retrieval as an option on a trained strategy: `lora+retrieval` is LoRA whose every input
carries its k nearest train examples (MiniLM + FAISS, tasks/models/retrieval.py), in training
exactly as in evaluation and serving, so the report can set `lora` and `lora+retrieval` side by
side (the retrieval ablation).

How the neighbours enter the input depends on the task:
- classification: a second segment after the example, "label: text | label: text …"
  (tokenizer pair encoding, so BERT sees [CLS] example [SEP] neighbours [SEP]); the sequence may
  grow by `context_tokens` beyond model.max_length;
- generation: the neighbours as earlier chat turns (the same prompt retrieval_few_shot builds),
  the prompt allowed `context_tokens` more than model.max_length.

Leakage guard: only train rows are indexed, and a train example never retrieves its own row
(`exclude`), so training never sees an example's own answer in its context. The index is saved
with the version and bound to its data version and encoder, like retrieval_few_shot's.

The model is `Retrieving` (tasks/strategies/_retrieving.py). Registered once as a variant (last
line): registry.get("lora+retrieval") derives it from lora on demand; its params are lora's plus
`RetrievalFields`."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields, make_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from tasks.models.heads import Head
from tasks.models.packaged import MINILM
from tasks.models.retrieval import RETRIEVAL_SUFFIX as SUFFIX
from tasks.strategies.retrieval_index import filled_by_run, load_index, measure_retrieval, train_index
from tasks.strategies.registry import Strategy, register_variant

if TYPE_CHECKING:   # torch: imported where a model is built (Retrieving), not to read settings
    from torch import nn

INDEX_DIR = "retrieval_index"


@dataclass(frozen=True)
class RetrievalFields:
    """What `strategies.<name>.retrieval` sets (docs/retrieval.md)."""
    k: int = field(default=4, metadata={"help": "neighbours per input (1..16), nearest first"})
    demo_max_chars: int = field(default=200, metadata={
        "help": "each retrieved text is cut to this many characters"})
    context_tokens: int = field(default=128, metadata={
        "help": "tokens the neighbours may add to an input beyond model.max_length (attention cost grows "
                "with it: 128 more on 128 is about 2x the training time per step on BERT-base)"})
    embedder: str = field(default=MINILM, metadata={
        "help": "the sentence encoder the index is built with (a packaged name or a model folder)"})
    index: str = filled_by_run("the folder of the train split's index")
    data_version: str = filled_by_run("the train rows' sha256 the index is bound to")

    def __post_init__(self):
        if not 1 <= self.k <= 16:
            raise ValueError(f"retrieval.k must be in 1..16, got {self.k}")
        if self.demo_max_chars <= 0 or self.context_tokens <= 0:
            raise ValueError(f"retrieval.demo_max_chars and retrieval.context_tokens must be positive, got "
                             f"{self.demo_max_chars} and {self.context_tokens}")
        own_checks = getattr(super(), "__post_init__", None)   # the strategy's params' (MRO: after these)
        if own_checks is not None:
            own_checks()


OPTION_FIELDS = tuple(f.name for f in fields(RetrievalFields))


def base_name(name: str) -> str | None:
    """'lora' for 'lora+retrieval'; None for a name without the suffix."""
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) else None


def option_params(raw: dict) -> tuple[dict, dict]:
    """(the strategy's own settings, its `retrieval` section) from its params section."""
    own = {k: v for k, v in raw.items() if k != "retrieval"}
    option = raw.get("retrieval") or {}
    if not isinstance(option, dict):
        raise ValueError(f"retrieval must be a mapping such as {{k: 4}}, got {option!r}")
    return own, dict(option)


# --- the derived strategy


def own_params(base: Strategy, params):
    """The strategy's own params out of its retrieval variant's."""
    return base.params_cls(**{f.name: getattr(params, f.name) for f in fields(base.params_cls)})


def attach_index(params, train: pd.DataFrame, answer_col: str):
    """The params with the index of `train` (built once per data version and encoder)."""
    folder, version = train_index(train, answer_col, params.embedder)
    return replace(params, index=str(folder), data_version=version)


@functools.lru_cache(maxsize=None)
def params_with_retrieval(own_cls: type) -> type:
    """A strategy's params plus RetrievalFields: one class per strategy's params class, made when
    first asked for. Pickled as (own_cls, values) and made again on loading (`_restore`), since no
    module holds it by name (ops.isolation: process sends the parsed settings as a pickle)."""
    def __reduce__(self):
        return _restore, (own_cls, {f.name: getattr(self, f.name) for f in fields(self)})

    return make_dataclass(f"{own_cls.__name__}WithRetrieval", [], bases=(RetrievalFields, own_cls), frozen=True,
                          namespace={"__reduce__": __reduce__})


def _restore(own_cls: type, values: dict):
    return params_with_retrieval(own_cls)(**values)


@functools.lru_cache(maxsize=None)
def with_retrieval(base: Strategy) -> Strategy:
    if not base.trains:
        raise KeyError(f"strategy {base.name!r} does not train: retrieval is an option of trained strategies "
                       f"(retrieval_few_shot is the prompting one)")
    clash = set(OPTION_FIELDS) & {f.name for f in fields(base.params_cls)}
    if clash:
        raise KeyError(f"strategy {base.name!r} has its own {', '.join(sorted(clash))}: it cannot take retrieval")
    params_cls = params_with_retrieval(base.params_cls)

    def build(base_dir: Path, head: Head, params) -> nn.Module:
        from tasks.strategies._retrieving import Retrieving

        index = load_index(params.index, params.embedder, params.data_version)
        return Retrieving(base.build(base_dir, head, own_params(base, params)), index, params)

    def save(model: nn.Module, out_dir: Path) -> None:
        base.save(model.inner, out_dir)
        model.index.save(out_dir / INDEX_DIR)

    def load(base_dir: Path, saved_dir: Path, head: Head, params) -> nn.Module:
        """Refused when the saved index is not the data version the version names, or the
        encoder here is not the one it was built with."""
        from tasks.strategies._retrieving import Retrieving

        index = load_index(saved_dir / INDEX_DIR, params.embedder, params.data_version)
        return Retrieving(base.load(base_dir, saved_dir, head, own_params(base, params)), index, params)

    merge = None
    if base.merge is not None:
        def merge(model: nn.Module) -> nn.Module:
            from tasks.strategies._retrieving import Retrieving

            return Retrieving(base.merge(model.inner), model.index, model.params)

    return Strategy(name=base.name + SUFFIX, summary=f"{base.name} with each input's k nearest train examples in it",
                    params_cls=params_cls, trains=True, saves=base.saves, build=build, save=save, load=load,
                    base_kind=base.base_kind, library=base.library, merge=merge, tasks=base.tasks, retrieves=True,
                    retrieval_metrics=measure_retrieval)


def split_neighbours(params, frames: dict[str, pd.DataFrame], train_ids: list[int] | None = None
                     ) -> dict[str, list[list[tuple[str, str]]]]:
    """Every split's rows' neighbours from the index in `params` (attach_index first). A train
    row never retrieves its own row, so no training example sees its own answer: its id in the
    index is its position in the whole train split (`train_ids` when frames["train"] holds some
    of the rows, else its position in the frame)."""
    index = load_index(params.index, params.embedder, params.data_version)
    out = {}
    for split, frame in frames.items():
        texts = frame["text"].astype(str).tolist()
        exclude = (list(train_ids) if train_ids is not None else list(range(len(texts)))) if split == "train" else None
        out[split] = index.neighbours(texts, params.k, exclude)
    return out


register_variant(SUFFIX, with_retrieval, "the strategy with each input's k nearest train examples in it "
                 "(trains; saves the strategy's weights + its index); set in the strategy's params section "
                 "as `retrieval: {k: 3, ...}`:", RetrievalFields)
