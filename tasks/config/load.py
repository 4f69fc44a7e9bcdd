"""Effective settings: params.yaml defaults, one profile's overrides, then CLI choices, read
by `load_settings`, the only reader of a params file. Every section comes back typed."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from tasks.config.cost import CostSettings
from tasks.config.ops import OpsSettings
from tasks.config.schema import SettingsError, merge, parse_section
from tasks.config.sections import (
    AUTO,
    DATASET_KEYS,
    DataSettings,
    EvaluationSettings,
    GenerationSettings,
    ModelSettings,
    ProjectSettings,
    TrainSettings,
    ValidationSettings,
    dataset_slug,
)
from tasks.config.policy import PolicySettings
from tasks.config.feedback import DriftSettings, FeedbackSettings
from tasks.config.release import CanarySettings, OutcomeSettings
from tasks.config.review import ReviewSettings
from tasks.config.serving import ServingSettings
from tasks.config.tune import TuneSettings
from tasks.tasktypes import DEFAULT, task_type
from tasks.tasktypes import names as task_names

REQUIRED = ("project", "data", "validation", "model", "train", "strategies")


@dataclass(frozen=True)
class Settings:
    project: ProjectSettings
    data: DataSettings
    validation: ValidationSettings
    model: ModelSettings
    train: TrainSettings
    strategies: list[str]
    task: str = DEFAULT              # a registered task type (tasks/tasktypes): stages ask it, never its name
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    ops: OpsSettings = field(default_factory=OpsSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    tune: TuneSettings = field(default_factory=TuneSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)   # checked in evaluation and serving
    outcomes: OutcomeSettings = field(default_factory=OutcomeSettings)   # what serving records per answer
    canary: CanarySettings = field(default_factory=CanarySettings)       # how a canary release is judged
    review: ReviewSettings = field(default_factory=ReviewSettings)       # blinded human review, its gate
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)  # POST /feedback and fold-feedback
    drift: DriftSettings = field(default_factory=DriftSettings)           # drift on live inputs (drift-check)
    cost: CostSettings = field(default_factory=CostSettings)             # the deployment costs are computed for
    # Each chosen strategy's params, parsed and validated once at load (its params dataclass,
    # defaults filled in); `<name>+retrieval`'s from its strategy's section and `retrieval` option.
    strategy_params: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None
    root: Path = Path(".")
    # The merged params as read (each strategy's section raw, retrieval sections synthesised), for
    # params_hash: everything else reads the typed sections.
    effective: dict[str, Any] = field(default_factory=dict, repr=False)

    def path(self, relative: str) -> Path:
        """A path from params, resolved against the project root."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.root / p).resolve()

    def params_hash(self) -> str:
        """sha256 of the effective settings: two runs with the same hash ran the same params."""
        blob = json.dumps(self.effective, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def user_data_override(path: str, text_col: str | None = None, label_col: str | None = None,
                       split_col: str | None = None, group_col: str | None = None,
                       labels: list[str] | None = None, target_col: str | None = None,
                       drop_empty_texts: bool | None = None, drop_duplicate_texts: bool | None = None,
                       drop_undecodable: bool | None = None, validation_size: float | None = None,
                       test_size: float | None = None) -> dict:
    """The params override for `adaptflow run --data PATH ...`: every dataset key back to its
    default (the packaged corpus's columns and cleaning rules do not carry over), then the
    user's choices (columns, split sizes, and the cleaning rules as --drop-* flags). Labels are inferred
    unless given. The experiment and registered model are named after the file (auto), never
    the params file's project: `--model-name` names the model instead."""
    from tasks.strategies.registry import field_default

    defaults = {f.name: field_default(f)
                for f in fields(DataSettings) if f.name in DATASET_KEYS and f.name != "source"}
    chosen = {"source": path, "text_col": text_col, "label_col": label_col, "target_col": target_col,
              "split_col": split_col, "group_col": group_col, "drop_empty_texts": drop_empty_texts,
              "drop_duplicate_texts": drop_duplicate_texts, "drop_undecodable": drop_undecodable,
              "validation_size": validation_size, "test_size": test_size}
    data = {**defaults, **{k: v for k, v in chosen.items() if v is not None}}
    return {"data": data, "validation": {"labels": list(labels or [])},
            "project": {"experiment": AUTO, "registered_model": AUTO}}


def run_overrides(data: dict | None = None, base: str | None = None, task: str | None = None,
                  tune: bool = False, tune_trials: int | None = None, model_name: str | None = None) -> dict | None:
    """What the command line (or the Prefect form) overrides: the user's data file
    (`user_data_override`), the base model folder (`--base PATH` -> model.base), the task,
    tuning (`--tune` -> tune.enabled, `--tune-trials N` with it -> tune.trials) and the
    registered model's name (`--model-name` -> project.registered_model)."""
    out = user_data_override(**data) if data else {}
    if tune:
        out["tune"] = {"enabled": True, **({"trials": tune_trials} if tune_trials is not None else {})}
    if base:
        out["model"] = {"base": base}
    if task:
        out["task"] = task
    if model_name:
        out["project"] = {**out.get("project", {}), "registered_model": model_name}
    return out or None


def with_auto_names(raw: dict, task: str) -> dict:
    """The params with every `auto` filled in from the data and the task: model.base (the task
    type's default base), project.experiment (adaptflow-<data>) and project.registered_model
    (<data>-<task>), <data> from data.source's file name (`dataset_slug`)."""
    project, model = dict(raw.get("project") or {}), dict(raw.get("model") or {})
    slug = dataset_slug(str((raw.get("data") or {}).get("source") or "data"))
    if project.get("experiment", AUTO) == AUTO:
        project["experiment"] = f"adaptflow-{slug}"
    if project.get("registered_model", AUTO) == AUTO:
        project["registered_model"] = f"{slug}-{task}"
    if model.get("base", AUTO) == AUTO:
        model["base"] = task_type(task).default_base
    return {**raw, "project": project, "model": model}


def with_labels(settings: Settings, labels: list[str]) -> Settings:
    """The settings with the label set the data contract settled on (declared or inferred)."""
    return replace(settings, validation=replace(settings.validation, labels=list(labels)))


def load_settings(
    params_file: str | Path = "params.yaml",
    profile: str | None = None,
    strategies: list[str] | None = None,
    overrides: dict | None = None,
) -> Settings:
    """Read params, apply a profile, then `overrides` (e.g. `user_data_override`) and a
    strategy choice; validate every section."""
    path = Path(params_file)
    raw = _merged(path, profile, overrides)
    missing = [s for s in REQUIRED if s not in raw]
    if missing:
        raise SettingsError(f"{path}: missing section(s): {', '.join(missing)}")
    task = _task(path, raw)
    raw = with_auto_names(raw, task)
    # A task type's strategy params live where it says (generation: generation.strategies, since
    # zero_shot and few_shot take other params there and LoRA's target modules differ on a causal
    # LM); the list to run is strategies.run for every task type.
    generation = {k: v for k, v in (raw.get("generation") or {}).items() if k != "strategies"}
    section = {"run": raw["strategies"].get("run", []), **section_at(raw, task_type(task).strategies_section)}
    chosen, strat_raw, parsed = _strategies(path, section, strategies, task)
    raw["strategies"] = {"run": list(chosen), **strat_raw}
    settings = Settings(
        project=parse_section(ProjectSettings, raw["project"], "project"),
        data=parse_section(DataSettings, raw["data"], "data"),
        validation=parse_section(ValidationSettings, raw["validation"], "validation"),
        model=parse_section(ModelSettings, raw["model"], "model"),
        train=parse_section(TrainSettings, raw["train"], "train"),
        strategies=list(chosen),
        task=task,
        generation=parse_section(GenerationSettings, generation, "generation"),
        evaluation=_evaluation(raw.get("evaluation")),
        ops=parse_section(OpsSettings, raw.get("ops"), "ops"),
        serving=parse_section(ServingSettings, raw.get("serving"), "serving"),
        tune=parse_section(TuneSettings, raw.get("tune"), "tune"),
        policy=parse_section(PolicySettings, raw.get("policy"), "policy"),
        outcomes=parse_section(OutcomeSettings, raw.get("outcomes"), "outcomes"),
        canary=parse_section(CanarySettings, raw.get("canary"), "canary"),
        review=parse_section(ReviewSettings, raw.get("review"), "review"),
        feedback=parse_section(FeedbackSettings, raw.get("feedback"), "feedback"),
        drift=parse_section(DriftSettings, raw.get("drift"), "drift"),
        cost=parse_section(CostSettings, raw.get("cost"), "cost"),
        strategy_params=parsed,
        profile=profile,
        root=path.resolve().parent,
        effective=raw,
    )
    if settings.train.processes > 1 and settings.ops.isolation != "process":
        raise SettingsError(f"{path}: train.processes={settings.train.processes} starts each strategy under "
                            f"`accelerate launch`, which needs ops.isolation: process (it is "
                            f"{settings.ops.isolation!r}); set one or the other")
    if settings.tune.enabled and settings.train.processes > 1:
        raise SettingsError(f"{path}: tune.enabled runs each trial in one process; train.processes="
                            f"{settings.train.processes} would split every trial across processes. Tune with "
                            f"train.processes: 1 (several workers can share a study: tune.storage), then train")
    _check_task_data(path, settings)
    _check_spaces(path, settings)
    return settings


def section_at(raw: dict, dotted: str) -> dict:
    """The params section at a dotted name (`generation.strategies`); {} where there is none."""
    for key in dotted.split("."):
        raw = (raw or {}).get(key) or {}
    return dict(raw)


def _check_spaces(path: Path, s: Settings) -> None:
    """Every `tune.spaces` entry names a strategy of this run and a setting of it, in a form
    the tuner reads; refused at load, not after an hour of trials."""
    from tasks.strategies import registry
    from tasks.strategies.search import space_of

    for name, overrides in s.tune.spaces.items():
        if name not in registry.names(s.task):
            raise SettingsError(f"{path}: tune.spaces.{name}: no strategy {name!r} for task: {s.task}")
        if not registry.get(name, s.task).trains:
            raise SettingsError(f"{path}: tune.spaces.{name}: {name} does not train; its prompt variants "
                                f"are already chosen on validation")
        params = (s.strategy_params[name] if name in s.strategy_params   # else one this run does not run
                  else registry.get(name, s.task).parse_params(s.effective["strategies"].get(name) or {}))
        try:
            space_of(params, overrides or {})
        except ValueError as exc:
            raise SettingsError(f"{path}: tune.spaces.{name}.{exc}") from exc


def _task(path: Path, raw: dict) -> str:
    task = raw.get("task", DEFAULT)
    if task not in task_names():
        raise SettingsError(f"{path}: task must be one of {', '.join(task_names())}, not {task!r} (--task)")
    return task


def _check_task_data(path: Path, s: Settings) -> None:
    """A generation run needs a target column; a classification run must not name one; the
    selection metric must be one the task measures."""
    try:
        s.project.selection_metric(s.task)
    except ValueError as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    writes = [t for t in task_names() if task_type(t).answer_setting == "target_col"]
    if s.task in writes and not s.data.target_col:
        raise SettingsError(f"{path}: task: {s.task} needs data.target_col (--target-col): the column "
                            f"holding the text to write")
    if s.task not in writes and s.data.target_col:
        raise SettingsError(f"{path}: data.target_col={s.data.target_col!r} is for task: {' or '.join(writes)} "
                            f"(--task {writes[0]}); a classifier learns data.label_col")


def read_pipeline_account(params_file: str | Path, profile: str | None = None) -> str | None:
    """project.pipeline_account with the profile applied: all the reviewer commands (promote,
    rollback) need, from a params file that may hold nothing else (None when it declares none).
    A missing or unreadable file is a SettingsError, not "no pipeline account": reading none
    would skip the refusal of the pipeline's account (issue 27, finding 1)."""
    path = Path(params_file)
    account = (_merged(path, profile, None).get("project") or {}).get("pipeline_account")
    if account is not None and not isinstance(account, str):
        raise SettingsError(f"{path}: project.pipeline_account must be an account name, not {account!r}")
    return account


def read_review_settings(params_file: str | Path, profile: str | None = None) -> ReviewSettings:
    """The `review:` section with the profile applied, from a params file that may hold nothing
    else: promote reads only it (review.require_human, its gate) and project.pipeline_account."""
    path = Path(params_file)
    raw = _merged(path, profile, None).get("review")
    if raw is not None and not isinstance(raw, dict):
        raise SettingsError(f"{path}: review: must be a mapping, not {raw!r}")
    return parse_section(ReviewSettings, raw, "review")


def _merged(path: Path, profile: str | None, overrides: dict | None) -> dict:
    """The params file, with the profile merged in and `overrides` replacing keys."""
    if not path.is_file():
        raise SettingsError(f"params file not found: {path} (pass --params FILE or run from the project folder)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:   # e.g. not readable by this account
        raise SettingsError(f"{path}: cannot read the params file ({exc.strerror}); make it readable by "
                            f"this account") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    profiles = raw.pop("profiles", {}) or {}
    if profile:
        if profile not in profiles:
            raise SettingsError(f"{path}: no profile '{profile}'; profiles: {', '.join(profiles) or 'none'}")
        raw = merge(raw, profiles[profile])
    for section, values in (overrides or {}).items():   # replaces keys, not merged into dicts
        raw[section] = {**(raw.get(section) or {}), **values} if isinstance(values, dict) else values
    return raw


def _strategies(path: Path, strat_raw: dict, strategies: list[str] | None, task: str
                ) -> tuple[list[str], dict, dict[str, Any]]:
    """(the strategies to run, each strategy's params section, each chosen strategy's parsed
    params): parsed and validated now, once, not mid-run; each must support the task."""
    from tasks.strategies import registry  # strategies register on import of the package
    from tasks.strategies.with_retrieval import base_name

    chosen = strategies if strategies is not None else strat_raw.pop("run", [])
    strat_raw.pop("run", None)
    if chosen == ["all"]:
        chosen = registry.names(task)
    unknown = [s for s in chosen if not registry.known(s)]
    if unknown:
        raise SettingsError(
            f"unknown strategy {', '.join(unknown)}; registered: {', '.join(registry.names())} "
            f"(and <trained strategy>+retrieval)"
        )
    for name in chosen:
        try:
            registry.get(name, task)
        except KeyError as exc:   # the registry's message says which strategies can
            raise SettingsError(str(exc).strip("'\"")) from exc
    if not chosen:
        raise SettingsError("no strategy to run: set strategies.run in params or pass --strategies")
    for name in strat_raw:
        if name not in registry.names():
            raise SettingsError(f"{path}: strategies.{name} configures an unregistered strategy"
                                + (f" (set {name}'s retrieval under strategies.{base_name(name)}.retrieval)"
                                   if base_name(name) else ""))
    strat_raw = with_retrieval_sections(strat_raw, chosen)
    parsed = {name: registry.get(name, task).parse_params(strat_raw.get(name) or {}) for name in chosen}
    return list(chosen), strat_raw, parsed


def with_retrieval_sections(strat_raw: dict, chosen: list[str]) -> dict:
    """Each strategy's params section without its `retrieval` option, plus one section per
    retrieval variant that runs: `strategies.lora.retrieval: {k: 4}` configures `lora+retrieval`
    (its LoRA settings are lora's), and `lora` itself runs without retrieval."""
    from tasks.strategies.with_retrieval import SUFFIX, base_name, option_params

    out = {}
    for name, raw in strat_raw.items():
        try:
            own, option = option_params(raw or {})
        except ValueError as exc:
            raise SettingsError(f"strategies.{name}.{exc}") from exc
        out[name] = own
        if option or name + SUFFIX in chosen:
            out[name + SUFFIX] = {**own, **option}
    for name in chosen:
        if base_name(name) and name not in out:
            out[name] = {}
    return out


def _evaluation(raw: dict | None) -> EvaluationSettings:
    from tasks.strategies import registry

    settings = parse_section(EvaluationSettings, raw, "evaluation")
    unknown = [s for s in settings.learning_curve_strategies if s not in registry.names()]
    if unknown:
        raise SettingsError(f"params: evaluation.learning_curve_strategies: unknown strategy "
                            f"{', '.join(unknown)}; registered: {', '.join(registry.names())}")
    return settings


def write_dataset_params(path: Path, data: DataSettings, extra: dict[str, str], header: str) -> None:
    """The dataset settings as `dataset:` in a YAML file that dvc.yaml reads (the remote left out:
    where the data is pushed does not change what it is), plus `extra` keys (resolved paths)."""
    from dataclasses import asdict

    import os
    import tempfile

    values = {k: v for k, v in asdict(data).items() if k != "dvc_remote"}
    text = header + yaml.safe_dump({"dataset": {**values, **extra}}, sort_keys=False)
    # Atomically: a reader (DVC, another run) sees the old file or the new one, never half of one.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)   # mkstemp's 0600 would hide it from the other accounts of a shared project
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_dataset_params(path: Path, extra: tuple[str, ...]) -> tuple[DataSettings, dict[str, str]]:
    """What `write_dataset_params` wrote, read back through the same section parser: the typed
    DataSettings and the `extra` keys."""
    if not path.is_file():
        raise SettingsError(f"{path} not found: `adaptflow run` writes it before running the DVC stages")
    values = dict((yaml.safe_load(path.read_text()) or {}).get("dataset") or {})
    missing = [k for k in extra if k not in values]
    if missing:
        raise SettingsError(f"{path}: dataset.{', dataset.'.join(missing)} missing; rerun `adaptflow run`")
    return parse_section(DataSettings, {k: v for k, v in values.items() if k not in extra}, "dataset"), \
        {k: values[k] for k in extra}
