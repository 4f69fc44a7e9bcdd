"""The strategy contract and its registrar.

A strategy is a name, a frozen params dataclass that validates itself, a builder that turns a
base model folder into the model to train (or to predict with), how to save and reload what it
trained, and how a saved version attaches to a base already in memory (`attach`). Optional
capabilities are declared fields (merge, sharing, retrieval metrics). Each module in this
package ends with one `register(...)` call; the package's __init__ imports each module on one
line. A test fails if a module is not registered.
"""
from __future__ import annotations

import re
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal

from tasks.models.heads import Head
from tasks.strategies.sharing import Attached, SharedBase, Sharing
from tasks.tasktypes import DEFAULT
from tasks.tasktypes import names as task_names
from tasks.tasktypes import task_type

if TYPE_CHECKING:   # annotations only: importing torch costs 1 s, and settings do not need it
    from torch import nn

# What a strategy's saved artifact holds: only adapter weights (plus the trained head); only
# the layers that trained (loaded back onto the base); the whole model; or no weights at all
# (a prompting baseline saves its prompt configuration).
Saves = Literal["adapter", "partial_weights", "full_model", "config_only"]

# What a strategy can be built on: any Hugging Face model with a sequence-classification
# class, or only a causal LM (prompting by next-token likelihood).
BaseKind = Literal["any", "causal_lm"]
Library = Literal["transformers", "peft", "adapters", "none"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,39}$")


def require_positive(params: Any, *names: str) -> None:
    """Every named field of `params` must be > 0; the error names them all with their values."""
    if any(getattr(params, n) <= 0 for n in names):
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        got = ", ".join(f"{n}={getattr(params, n)}" for n in names)
        raise ValueError(f"{listed} must be positive, got {got}")


def learning_rate_field(default: float, why: str = ""):
    """The `learning_rate` field of a strategy's params: its own default, the shared help, and
    why this default (the strategy's own reason, if any)."""
    text = "peak learning rate of AdamW (linear warm-up over 6 % of the steps, then linear decay)"
    return field(default=default, metadata={"help": f"{text}; {why}" if why else text})


def run_prompt_field(setting: str, what: str):
    """A prompting strategy's instruction or system prompt: "" takes the run's (generation.<setting>)."""
    return field(default="", metadata={"help": f"the {what}; \"\": generation.{setting}"})


@dataclass(frozen=True)
class TrainableParams:
    """Fields every trained strategy shares. Each field's default and help are stated once, here
    or in the strategy's own params (`adaptflow strategies` prints them)."""

    learning_rate: float = learning_rate_field(5e-5)
    epochs: int | None = field(default=None, metadata={
        "help": "epochs for this strategy; null: train.epochs"})
    group_by_length: bool | None = field(default=None, metadata={
        "help": "batches of similar length (less padding) for this strategy; null: train.group_by_length"})
    # Fields a subclass requires to be > 0 (sizes, ranks, lengths), checked with the rest.
    POSITIVE: ClassVar[tuple[str, ...]] = ()
    # What `--tune` searches (tasks/strategies/search.py): name -> Range | Choice. The learning
    # rate is always searched, a decade either side of the configured one where none is declared.
    SEARCH: ClassVar[dict] = {}

    def __post_init__(self):
        if self.POSITIVE:
            require_positive(self, *self.POSITIVE)
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")


@dataclass(frozen=True)
class Strategy:
    name: str
    summary: str
    params_cls: type
    trains: bool
    saves: Saves
    # build(base_dir, head, params) -> model whose forward(input_ids, attention_mask) has .logits;
    # head (tasks.models.heads.Head): the task, and for classification the labels
    build: Callable[[Path, Head, Any], nn.Module]
    # save(model, out_dir) writes safetensors (or a config for prompting baselines)
    save: Callable[[nn.Module, Path], None]
    # load(base_dir, saved_dir, head, params) -> the same model, ready to predict
    load: Callable[[Path, Path, Head, Any], nn.Module]
    # Prompting baselines: the prompt variants (templates, label descriptions, demonstration
    # draws) to evaluate for stability; the run logs their mean and spread and saves the one
    # that scores best on validation. variants(params, train_frame, labels) -> [params];
    # the train split is there for demonstration draws. None = a single configuration.
    variants: Callable[[Any, Any, list[str]], list[Any]] | None = None
    base_kind: BaseKind = "any"
    # Which library implements it, recorded on registered versions ("none": plain prompting).
    library: Library = "transformers"
    # Adapters that fold into the base weights (LoRA, IA3): merge(trained) -> a plain model with
    # the same logits and no adapter overhead at inference; the trained model is left as it was.
    merge: Callable[[nn.Module], nn.Module] | None = None
    # Versions that can share one base in memory (serving; tasks/strategies/sharing.py): PEFT
    # adapters of one type, `adapters`-library adapters. None: each version is a model of its own.
    sharing: Sharing | None = None
    # The tasks it can run. A name may be registered once per task (zero_shot classifies by
    # embedding similarity and generates from an instruction: two strategies, one name).
    tasks: tuple[str, ...] = (DEFAULT,)
    # Inputs carry retrieved train examples (`<name>+retrieval`, tasks/strategies/with_retrieval.py):
    # served as its own module, since the index and the inputs it builds are the version's own.
    retrieves: bool = False
    # Generation SFT may pack several examples to a row (train.pack_generation): its model takes
    # position ids and adds no virtual tokens in front of the input (prompt / prefix tuning do).
    packs: bool = False
    # Strategies with a retrieval index (the `+retrieval` variants, retrieval_few_shot):
    # retrieval_metrics(model, texts, tokenizer, prompt) -> the index's size and build time, one
    # query's latency and the prompt tokens the neighbours add (prompt: generation's, else None).
    retrieval_metrics: Callable[[nn.Module, list[str], Any, Any], dict[str, float]] | None = None

    def share_key(self, saved_dir: Path, params) -> str | None:
        """Saved versions with equal keys (on the same base, with the same head) can share one base
        in memory; None: this strategy's versions cannot."""
        return None if self.sharing is None else f"{self.sharing.kind}:{self.sharing.key(saved_dir, params)}"

    def mixes(self, saved_dir: Path, params) -> bool:
        """Versions like this saved one answer requests for several versions in one forward pass."""
        return (self.sharing is not None and self.sharing.forward_mixed is not None
                and self.sharing.mixes(self.sharing.key(saved_dir, params)))

    def attach(self, base_dir: Path, saved_dir: Path, head: Head, params, *, shared: SharedBase | None = None,
               name: str = "") -> Attached:
        """The saved version ready to answer: on `shared` (a base already in memory, made for
        versions of this `share_key`), under `name`; or, without one or when this strategy's
        versions cannot share, a model of its own (what `load` gives)."""
        if shared is None or self.sharing is None:
            return Attached(name=name, own=self.load(base_dir, saved_dir, head, params).eval())
        if shared.kind != self.sharing.kind or shared.head != head:
            raise ValueError(f"a {self.name} version cannot go on a {shared.kind} base for {shared.head}")
        return shared.add(self.sharing.attach(shared, saved_dir, params, name))

    def parse_params(self, raw: dict[str, Any]):
        known = {f.name for f in fields(self.params_cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(
                f"strategies.{self.name}: unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        try:
            return self.params_cls(**raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"strategies.{self.name}: {exc}") from exc


_REGISTRY: dict[str, list[Strategy]] = {}
# suffix -> (derive, summary, the option's own params class)
_VARIANTS: dict[str, tuple[Callable[[Strategy], Strategy], str, type]] = {}


def register(strategy: Strategy) -> Strategy:
    if not _NAME.match(strategy.name):
        raise ValueError(f"bad strategy name {strategy.name!r}: use lower_snake_case, 2-40 chars")
    if not strategy.tasks or set(strategy.tasks) - set(task_names()):
        raise ValueError(f"strategy {strategy.name!r}: tasks must be among {', '.join(task_names())}")
    taken = [t for s in _REGISTRY.get(strategy.name, []) for t in s.tasks if t in strategy.tasks]
    if taken:
        raise ValueError(f"strategy {strategy.name!r} is registered twice for task {', '.join(taken)}")
    if not (isinstance(strategy.params_cls, type) and hasattr(strategy.params_cls, "__dataclass_fields__")):
        raise TypeError(f"strategy {strategy.name!r}: params_cls must be a dataclass")
    if strategy.trains and not issubclass(strategy.params_cls, TrainableParams):
        raise TypeError(f"strategy {strategy.name!r} trains, so its params must extend TrainableParams")
    if strategy.trains and strategy.variants is not None:
        raise TypeError(f"strategy {strategy.name!r}: prompt variants are for strategies that do not train")
    _REGISTRY.setdefault(strategy.name, []).append(strategy)
    return strategy


class UnsupportedTask(KeyError):
    """The strategy exists but cannot run this task."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_variant(suffix: str, derive: Callable[[Strategy], Strategy], summary: str, option_cls: type) -> None:
    """`<name><suffix>` names `derive(<name>'s strategy)`: an option every trained strategy can
    take (`lora+retrieval`, tasks/strategies/with_retrieval.py). derive raises KeyError when the
    strategy cannot take it. `summary` and the option's own params (`option_cls`) are what
    `adaptflow strategies` prints for it."""
    _VARIANTS[suffix] = (derive, summary, option_cls)


def _variant(name: str) -> tuple[str, Callable[[Strategy], Strategy]] | None:
    return next(((name[: -len(s)], d) for s, (d, _, _) in _VARIANTS.items() if name.endswith(s)), None)


def get(name: str, task: str = DEFAULT) -> Strategy:
    """The strategy `name` for `task`; `<trained strategy>+retrieval` is derived from it."""
    variant = _variant(name)
    if variant is not None:
        return variant[1](get(variant[0], task))
    if name not in _REGISTRY:
        raise KeyError(f"unknown strategy {name!r}; registered: {', '.join(names())}")
    for strategy in _REGISTRY[name]:
        if task in strategy.tasks:
            return strategy
    raise UnsupportedTask(f"strategy {name!r} cannot run task: {task} (it runs "
                          f"{', '.join(t for s in _REGISTRY[name] for t in s.tasks)}); "
                          f"strategies for {task}: {', '.join(names(task))}")


def known(name: str) -> bool:
    """A registered name, or a variant of one (`lora+retrieval`); whether it can run a task is get's question."""
    return (_variant(name) or (name,))[0] in _REGISTRY


def names(task: str | None = None) -> list[str]:
    """Registered names in registration order; with a task, those that can run it."""
    return [n for n, impls in _REGISTRY.items() if task is None or any(task in s.tasks for s in impls)]


def all_strategies() -> list[Strategy]:
    return [s for impls in _REGISTRY.values() for s in impls]


# --- what `adaptflow strategies` prints: every field's type, default and help, from the dataclass


def param_help(f: Field) -> str:
    return str(f.metadata.get("help", "")).strip()


def field_default(f: Field) -> Any:
    """A dataclass field's default (its factory's value); MISSING when it has none."""
    return f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default


def _default_text(f: Field, width: int = 72) -> str:
    """The default as params.yaml would write it (null, true, "text"), cut to `width`."""
    import json

    value = field_default(f)
    if value is MISSING:
        return "(required)"
    text = json.dumps(value, ensure_ascii=False, default=repr)
    if len(text) > width and isinstance(value, dict):   # e.g. few-shot templates: their names
        text = "{" + ", ".join(f"{json.dumps(k)}: ..." for k in value) + "}"
    return text if len(text) <= width else text[: width - 3] + "..."


def describe_params(params_cls: type) -> list[str]:
    """One line per field (name: type = default), its help wrapped below it."""
    import textwrap

    lines = []
    for f in fields(params_cls):
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        lines.append(f"    {f.name}: {kind} = {_default_text(f)}")
        lines += textwrap.wrap(param_help(f), 96, initial_indent=" " * 8, subsequent_indent=" " * 8)
    return lines


def describe(strategy: Strategy) -> str:
    """The strategy's name, what it trains and saves, its summary, then each parameter."""
    what = "trains" if strategy.trains else "no training"
    head = f"{strategy.name}  [{what}; saves {strategy.saves}; library {strategy.library}]  {strategy.summary}"
    return "\n".join([head, *describe_params(strategy.params_cls)])


def describe_all() -> str:
    """Every registered strategy per task type (where its params live in params.yaml), then each
    option a trained strategy can take (`<name>+retrieval`)."""
    blocks = []
    for task in task_names():
        t = task_type(task)
        blocks.append(f"== {task}: {t.summary}\n"
                      f"   params: {t.strategies_section}.<name> in params.yaml")
        blocks += [describe(s) for s in all_strategies() if task in s.tasks]
    for suffix, (_, summary, option_cls) in _VARIANTS.items():
        blocks.append("\n".join([f"== <trained strategy>{suffix}  {summary}", *describe_params(option_cls)]))
    return "\n\n".join(blocks)
