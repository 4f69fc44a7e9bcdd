"""Effective settings: params.yaml defaults, one profile's overrides, then CLI choices.

Each section becomes a frozen dataclass that validates itself, so a bad setting fails at
load time with the key's full name instead of deep inside training.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class SettingsError(ValueError):
    """A setting in params.yaml (or a profile, or the command line) is wrong."""


def merge(base: dict, override: dict) -> dict:
    """`override` on top of `base`, recursively for dicts (a profile on the defaults)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _section(cls, raw: dict, name: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SettingsError(
            f"params: unknown key(s) {', '.join(name + '.' + k for k in unknown)}; "
            f"known keys in '{name}': {', '.join(sorted(known))}"
        )
    try:
        return cls(**raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"params: section '{name}': {exc}") from exc


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


@dataclass(frozen=True)
class ProjectSettings:
    experiment: str
    registered_model: str
    select_metric: str = "test_macro_f1"
    min_improvement: float = 0.0
    budgets: dict[str, float | None] = field(default_factory=dict)
    approval_timeout_seconds: int = 86400
    approval_poll_seconds: int = 10
    pipeline_account: str | None = None
    recommend_tolerance_points: float = 1.0

    def __post_init__(self):
        from tasks.decisions import BUDGET_METRICS

        _require(bool(self.registered_model.strip()), "registered_model must not be empty")
        _require(self.min_improvement >= 0, "min_improvement must be >= 0")
        unknown = sorted(set(self.budgets) - set(BUDGET_METRICS))
        _require(not unknown, f"unknown budget(s) {', '.join(unknown)}; known: {', '.join(BUDGET_METRICS)}")
        _require(self.approval_timeout_seconds > 0 and self.approval_poll_seconds > 0,
                 "approval_timeout_seconds and approval_poll_seconds must be positive")


# The keys that describe one dataset (the file and how to read, clean and split it). `adaptflow
# run --data PATH` replaces all of them: a new file starts from these defaults, not from the
# packaged corpus's columns and cleaning rules.
DATASET_KEYS = ("source", "format", "delimiter", "encoding", "text_col", "label_col", "split_col",
                "group_col", "label_map", "drop_labels", "drop_empty_texts", "drop_duplicate_texts",
                "validation_size", "test_size")
FORMATS = ("auto", "csv", "tsv", "jsonl", "parquet")


@dataclass(frozen=True)
class DataSettings:
    """One dataset: where it comes from, how to read it, clean it and split it (params `data:`)."""
    source: str                       # a file (CSV, TSV, JSONL, Parquet) or package:PKG/PATH
    processed_dir: str
    split_seed: int
    dvc_remote: str
    format: str = "auto"              # auto: from the extension (.gz/.bz2/.xz/.zip allowed)
    delimiter: str | None = None      # CSV/TSV field separator; None: "," for csv, tab for tsv
    encoding: str = "utf-8"
    text_col: str = "text"
    label_col: str = "label"
    split_col: str | None = None      # the user's own split (values train/validation/test)
    group_col: str | None = None      # whole groups go to one split (no group in two splits)
    label_map: dict[str, str] = field(default_factory=dict)   # raw value -> label
    drop_labels: list[str] = field(default_factory=list)      # raw values whose rows are dropped
    drop_empty_texts: bool = False    # False: an empty text is a validation error
    drop_duplicate_texts: bool = False   # False: a duplicate is a validation error
    validation_size: float = 0.1      # < 1: a fraction of the rows; >= 1: a number of rows
    test_size: float = 0.2

    def __post_init__(self):
        _require(bool(str(self.source).strip()), "source must name a file (or package:PKG/PATH)")
        _require(self.format in FORMATS, f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        _require(self.validation_size > 0 and self.test_size > 0,
                 "validation_size and test_size must be positive (a fraction < 1, or a row count)")
        fractions = [x for x in (self.validation_size, self.test_size) if x < 1]
        _require(sum(fractions) < 1, "validation_size + test_size as fractions must leave rows for training")
        _require(not (self.split_col and self.group_col and self.split_col == self.group_col),
                 "split_col and group_col must be different columns")
        _require(len({self.text_col, self.label_col} | {c for c in (self.split_col, self.group_col) if c}) ==
                 2 + bool(self.split_col) + bool(self.group_col),
                 "text_col, label_col, split_col and group_col must name different columns")
        _require(not Path(self.dvc_remote).as_posix().startswith("data/"),
                 "dvc_remote must be outside data/ (a remote inside the tracked folder would track itself)")

    @property
    def raw_path(self) -> str:
        """Where `ingest` puts the DVC-tracked copy: data/raw/<the source's file name>."""
        return f"data/raw/{Path(self.source.removeprefix('package:')).name}"


@dataclass(frozen=True)
class ValidationSettings:
    """The data contract (tasks/validation.py); each bound is checked on the raw file and the splits."""
    labels: list[str] = field(default_factory=list)   # declared label set (its order = label ids); [] = infer
    text_min_chars: int = 1
    text_max_chars: int = 1000
    text_max_tokens: int = 512           # a hard bound, in the base model's tokens
    max_share_over_max_length: float = 0.05   # texts longer than model.max_length are truncated
    min_examples_per_label: int = 10     # in every split
    max_class_share: float = 0.95        # of any one class, in every split
    max_classes: int = 100
    drift_max_label_tvd: float = 0.1     # warnings against the previous validated version
    drift_max_length_psi: float = 0.2
    example_rows: int = 5

    def __post_init__(self):
        _require(len(self.labels) != 1, "labels must declare at least two classes (or none: inferred)")
        _require(len(set(self.labels)) == len(self.labels), "labels must be unique")
        _require(0 < self.text_min_chars <= self.text_max_chars,
                 "need 0 < text_min_chars <= text_max_chars")
        _require(self.text_max_tokens > 0, "text_max_tokens must be positive")
        _require(0 <= self.max_share_over_max_length <= 1, "max_share_over_max_length must be in [0, 1]")
        _require(self.min_examples_per_label >= 1, "min_examples_per_label must be >= 1")
        _require(0 < self.max_class_share <= 1, "max_class_share must be in (0, 1]")
        _require(self.max_classes >= 2, "max_classes must be >= 2")
        _require(self.drift_max_label_tvd >= 0 and self.drift_max_length_psi >= 0,
                 "drift thresholds must be >= 0")
        _require(self.example_rows >= 1, "example_rows must be >= 1")


def user_data_override(path: str, text_col: str | None = None, label_col: str | None = None,
                       split_col: str | None = None, group_col: str | None = None,
                       labels: list[str] | None = None) -> dict:
    """The params override for `adaptflow run --data PATH ...`: every dataset key back to its
    default (the packaged corpus's columns and cleaning rules do not carry over), then the
    user's choices. Labels are inferred unless given."""
    defaults = {f.name: (f.default if f.default is not MISSING else f.default_factory())  # type: ignore[misc]
                for f in fields(DataSettings) if f.name in DATASET_KEYS and f.name != "source"}
    chosen = {"source": path, "text_col": text_col, "label_col": label_col,
              "split_col": split_col, "group_col": group_col}
    data = {**defaults, **{k: v for k, v in chosen.items() if v is not None}}
    return {"data": data, "validation": {"labels": list(labels or [])}}


def with_labels(settings: "Settings", labels: list[str]) -> "Settings":
    """The settings with the label set the data contract settled on (declared or inferred)."""
    from dataclasses import replace

    return replace(settings, validation=replace(settings.validation, labels=list(labels)))


@dataclass(frozen=True)
class ModelSettings:
    base: str
    max_length: int = 64

    def __post_init__(self):
        _require(8 <= self.max_length <= 512, "max_length must be between 8 and 512 tokens")


@dataclass(frozen=True)
class TrainSettings:
    seed: int = 13
    batch_size: int = 16
    epochs: int = 1
    eval_every: int = 100
    patience: int = 3
    max_train_examples: int = 0
    max_eval_examples: int = 0
    threads: int = 2
    group_by_length: bool = False

    def __post_init__(self):
        _require(self.batch_size > 0, "batch_size must be positive")
        _require(self.epochs > 0, "epochs must be positive")
        _require(self.eval_every > 0, "eval_every must be positive")
        _require(self.patience > 0, "patience must be positive")
        _require(self.max_train_examples >= 0 and self.max_eval_examples >= 0,
                 "max_*_examples must be >= 0 (0 = all)")
        _require(self.threads > 0, "threads must be positive")


@dataclass(frozen=True)
class EvaluationSettings:
    """Risk and data-efficiency measurements beyond the test split (see params.yaml)."""
    forgetting_train_examples: int = 500
    forgetting_test_examples: int = 500
    forgetting_max_length: int = 128
    learning_curve_strategies: list[str] = field(default_factory=list)
    learning_curve_sizes: list[int] = field(default_factory=list)
    merged_latency: bool = True

    def __post_init__(self):
        _require(self.forgetting_train_examples >= 0 and self.forgetting_test_examples >= 0,
                 "forgetting_*_examples must be >= 0 (0 = do not measure forgetting)")
        _require(8 <= self.forgetting_max_length <= 512, "forgetting_max_length must be between 8 and 512")
        _require(all(n > 0 for n in self.learning_curve_sizes), "learning_curve_sizes must be positive")

    @property
    def measures_forgetting(self) -> bool:
        return self.forgetting_train_examples > 0 and self.forgetting_test_examples > 0


@dataclass(frozen=True)
class Settings:
    project: ProjectSettings
    data: DataSettings
    validation: ValidationSettings
    model: ModelSettings
    train: TrainSettings
    strategies: list[str]
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    strategy_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    profile: str | None = None
    root: Path = Path(".")
    raw: dict[str, Any] = field(default_factory=dict)

    def path(self, relative: str) -> Path:
        """A path from params, resolved against the project root."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.root / p).resolve()

    def params_hash(self) -> str:
        """sha256 of the effective settings: two runs with the same hash ran the same params."""
        blob = json.dumps(self.raw, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_settings(
    params_file: str | Path = "params.yaml",
    profile: str | None = None,
    strategies: list[str] | None = None,
    overrides: dict | None = None,
) -> Settings:
    """Read params, apply a profile, then `overrides` (e.g. `user_data_override`) and a
    strategy choice; validate every section."""
    from tasks.strategies import registry  # strategies register on import of the package

    path = Path(params_file)
    if not path.is_file():
        raise SettingsError(f"params file not found: {path} (pass --params FILE or run from the project folder)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    profiles = raw.pop("profiles", {}) or {}
    if profile:
        if profile not in profiles:
            raise SettingsError(f"{path}: no profile '{profile}'; profiles: {', '.join(profiles) or 'none'}")
        raw = merge(raw, profiles[profile])
    for section, values in (overrides or {}).items():   # replaces keys, not merged into dicts
        raw[section] = {**(raw.get(section) or {}), **values}

    missing = [s for s in ("project", "data", "validation", "model", "train", "strategies") if s not in raw]
    if missing:
        raise SettingsError(f"{path}: missing section(s): {', '.join(missing)}")

    strat_raw = dict(raw["strategies"])
    chosen = strategies if strategies is not None else strat_raw.pop("run", [])
    strat_raw.pop("run", None)
    if chosen == ["all"]:
        chosen = registry.names()
    unknown = [s for s in chosen if s not in registry.names()]
    if unknown:
        raise SettingsError(
            f"unknown strategy {', '.join(unknown)}; registered: {', '.join(registry.names())}"
        )
    if not chosen:
        raise SettingsError("no strategy to run: set strategies.run in params or pass --strategies")
    for name in strat_raw:
        if name not in registry.names():
            raise SettingsError(f"{path}: strategies.{name} configures an unregistered strategy")
    for name in chosen:  # validate each chosen strategy's params now, not mid-run
        registry.get(name).parse_params(strat_raw.get(name) or {})

    raw["strategies"] = {"run": list(chosen), **strat_raw}
    return Settings(
        project=_section(ProjectSettings, raw["project"], "project"),
        data=_section(DataSettings, raw["data"], "data"),
        validation=_section(ValidationSettings, raw["validation"], "validation"),
        model=_section(ModelSettings, raw["model"], "model"),
        train=_section(TrainSettings, raw["train"], "train"),
        strategies=list(chosen),
        evaluation=_evaluation(raw.get("evaluation") or {}, registry.names()),
        strategy_params={k: dict(v or {}) for k, v in strat_raw.items()},
        profile=profile,
        root=path.resolve().parent,
        raw=raw,
    )


def _evaluation(raw: dict, registered: list[str]) -> EvaluationSettings:
    settings = _section(EvaluationSettings, raw, "evaluation")
    unknown = [s for s in settings.learning_curve_strategies if s not in registered]
    if unknown:
        raise SettingsError(f"params: evaluation.learning_curve_strategies: unknown strategy "
                            f"{', '.join(unknown)}; registered: {', '.join(registered)}")
    return settings
