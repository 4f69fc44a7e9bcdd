"""Tuning (`tune.enabled`, `adaptflow run --tune`): an Optuna study per trained strategy over the
search space its params declare (tasks/strategies/search.py), trained on the train split and
judged on validation only -- the objective is the lowest validation loss a trial reaches (what
early stopping keeps), and the median pruner stops a trial whose validation loss trails the
others' at the same step. Trial 0 is the configured params, so "untuned" is in the study too.

Each trial is an MLflow run nested under its strategy's run (params, validation curve, state).
Studies live in `tune.storage` (SQLite under the project by default; a database URL lets
several workers share one study) under a name fixed by what is being tuned (strategy, params,
space, training settings, base and data version): a retried or repeated run resumes the study,
and its trials count toward `tune.trials`. The best trial's model, when it ran in this process,
is the strategy's final model (no second training of the same recipe)."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import mlflow
from tasks.artifacts.manifest import params_dict
from tasks.config import Settings
from tasks.strategies.search import Choice, Space, space_of
from tasks.training.fitting import best_val_loss, build_and_train
from tasks.training.strategy_run import StrategyInputs, Trained


@dataclass(frozen=True)
class TrialRecord:
    number: int
    state: str                   # COMPLETE | PRUNED | FAIL | RUNNING
    value: float | None          # the lowest validation loss it reached (None: pruned or failed)
    params: dict[str, Any]       # the searched values
    last_step: int | None        # the last step it reported (a pruned trial: where it stopped)
    curve: list[tuple[int, float]]   # (step, validation loss) as reported
    worker: str                  # host:pid that ran it


@dataclass(frozen=True)
class Tuned:
    study: str
    params: Any                  # the strategy's params with the chosen values
    chosen: dict[str, Any]       # the chosen values of the searched params
    space: dict[str, str]        # what was searched, as text
    trials: list[TrialRecord]    # every trial of the study, every worker's
    default_trial: int | None    # the trial that ran the configured params (None: not in the space)
    seconds: float               # this process's tuning time
    trained: Trained | None      # the best trial's model when it ran here, else None (retrain)

    def value(self, number: int | None) -> float | None:
        return next((t.value for t in self.trials if t.number == number), None)

    @property
    def best(self) -> TrialRecord:
        return min((t for t in self.trials if t.state == "COMPLETE"), key=lambda t: t.value)

    def metrics(self) -> dict[str, float]:
        out = {"tune_trials": float(len(self.trials)), "tune_seconds": self.seconds,
               "tune_pruned": float(sum(t.state == "PRUNED" for t in self.trials)),
               "tune_failed": float(sum(t.state == "FAIL" for t in self.trials)),
               "tune_best_val_loss": self.best.value}
        default = self.value(self.default_trial)
        return out | ({"tune_default_val_loss": default} if default is not None else {})

    def record(self) -> dict:
        """tuning.json on the strategy's run (the report's study history reads it)."""
        return {"study": self.study, "space": self.space, "chosen": self.chosen, "best_trial": self.best.number,
                "default_trial": self.default_trial, "seconds": self.seconds,
                "trials": [asdict(t) for t in self.trials]}


def storage_url(settings: Settings) -> str:
    """tune.storage as a SQLAlchemy URL (tasks/config/stores.py)."""
    from tasks.config.stores import database_url

    return database_url("tune.storage", settings.tune.storage, settings.root)


def study_name(inputs: StrategyInputs, settings: Settings, data_key: str, space: dict[str, Space]) -> str:
    """Fixed by what is tuned, so every worker (and a retry) tuning the same thing shares a study."""
    what = {"task": settings.task, "strategy": inputs.name, "params": params_dict(inputs.params),
            "space": describe(space),
            "train": asdict(settings.train), "max_length": settings.model.max_length,
            "base": inputs.base.fingerprint, "data": data_key, "pruner": settings.tune.pruner,
            "startup": settings.tune.startup_trials, "warmup": settings.tune.warmup_checks}
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{inputs.name}-{digest}"


def describe(space: dict[str, Space]) -> dict[str, str]:
    def text(s: Space) -> str:
        if isinstance(s, Choice):
            return "one of " + ", ".join(map(str, s.values))
        return f"{s.low:g} .. {s.high:g}{' (log)' if s.log else ''}{' (integer)' if s.integer else ''}"
    return {name: text(s) for name, s in space.items()}


def suggest(trial, name: str, space: Space):
    if isinstance(space, Choice):
        return trial.suggest_categorical(name, list(space.values))
    if space.integer:
        return trial.suggest_int(name, int(space.low), int(space.high), log=space.log)
    return trial.suggest_float(name, space.low, space.high, log=space.log)


def with_configured(space: dict[str, Space], params: Any) -> dict[str, Space]:
    """The space widened to hold the configured value of each searched param, so trial 0 can
    always be the untuned recipe (e.g. epochs 1 against a declared choice of 2 or 3)."""
    out = {}
    for name, s in space.items():
        v = getattr(params, name)
        if isinstance(s, Choice):
            out[name] = s if v in s.values else Choice((v, *s.values))
        else:
            out[name] = replace(s, low=min(s.low, v), high=max(s.high, v))
    return out


def open_study(name: str, settings: Settings, space: dict[str, Space], params: Any):
    import optuna

    tune, cfg = settings.tune, settings.train
    url = storage_url(settings)
    # SQLite: processes of one machine (Dask workers) wait for each other's writes instead of failing.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    # A worker that dies mid-trial stops beating: its trial is marked failed after the grace period.
    storage = optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=60, grace_period=180)
    # Optuna prunes from step n_warmup_steps on: + 1 spares exactly `warmup_checks` checks.
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=tune.startup_trials,
                                          n_warmup_steps=tune.warmup_checks * cfg.eval_every + 1)
              if tune.pruner == "median" else optuna.pruners.NopPruner())
    study = _create(optuna, storage, name, pruner)
    # A fresh study draws from the seed; a resumed one, or a second worker on a shared database,
    # draws from another stream, or it would repeat the trials already run.
    seed = (cfg.seed if tune.sampler_seed is None else tune.sampler_seed) + len(study.trials)
    seed += os.getpid() if tune.is_url else 0
    # Half the budget samples at random before TPE models the rest (TPE's own default is 10
    # random trials, more than a small budget holds).
    study.sampler = optuna.samplers.TPESampler(seed=seed % 2**32, n_startup_trials=max(1, tune.trials // 2))
    study.enqueue_trial({n: getattr(params, n) for n in space}, user_attrs={"configured": True}, skip_if_exists=True)
    return study


def _create(optuna, storage, name: str, pruner, attempts: int = 3):
    """create_study(load_if_exists) races when several processes create the same study (or the
    schema of a new database) at once: the loser gets an integrity error; it loads on a retry."""
    for attempt in range(attempts):
        try:
            return optuna.create_study(storage=storage, study_name=name, direction="minimize", pruner=pruner,
                                       load_if_exists=True)
        except Exception as exc:   # sqlalchemy IntegrityError / ProgrammingError / OperationalError
            if attempt == attempts - 1 or "exist" not in str(exc).lower() and "duplicate" not in str(exc).lower() \
                    and "locked" not in str(exc).lower():
                raise
            time.sleep(1 + attempt)


def tune_strategy(inputs: StrategyInputs, settings: Settings, data_key: str, experiment_id: str) -> Tuned:
    """Run the strategy's study (inside its MLflow run) and return the chosen params."""
    # The loop's own defaults made explicit, so the configured params can be trial 0.
    inputs = replace(inputs, params=replace(inputs.params, epochs=inputs.params.epochs or settings.train.epochs))
    space = with_configured(space_of(inputs.params, settings.tune.spaces.get(inputs.name)), inputs.params)
    name = study_name(inputs, settings, data_key, space)
    study = open_study(name, settings, space, inputs.params)
    objective = _Objective(inputs, settings, space, name, experiment_id, mlflow.active_run().info.run_id)
    start = time.perf_counter()
    _spend_budget(study, objective, settings, name, inputs.name)
    trials = [_record(t) for t in study.get_trials(deepcopy=False)]
    if not any(t.state == "COMPLETE" for t in trials):
        errors = "; ".join(f"trial {t.number}: {t.state}" for t in trials)
        raise RuntimeError(f"{inputs.name}: no tuning trial completed ({errors}); see the trial runs in MLflow")
    best = study.best_trial
    chosen = {k: best.params[k] for k in space}
    default = next((t.number for t in study.get_trials(deepcopy=False) if t.user_attrs.get("configured")), None)
    trained = objective.kept[1] if objective.kept and objective.kept[0] == best.number else None
    return Tuned(name, replace(inputs.params, **chosen), chosen, describe(space), trials, default,
                 time.perf_counter() - start, trained)


def _spend_budget(study, objective, settings: Settings, name: str, strategy: str) -> None:
    """Trials until the study holds tune.trials finished ones (every worker's) or tune.minutes pass."""
    import optuna

    tune = settings.tune
    done = len(study.get_trials(deepcopy=False, states=_finished()))
    failed = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)))
    if failed >= tune.trials:   # a study that only fails is broken, not unlucky: say so, do not loop
        raise RuntimeError(f"{strategy}: study {name} has {failed} failed trials (of tune.trials={tune.trials}); "
                           f"see the trial runs in MLflow, fix the cause, then delete the study or change tune.storage")
    if done < tune.trials:
        # Counted over the whole study, so two workers sharing it run `trials` between them.
        cap = optuna.study.MaxTrialsCallback(tune.trials, states=_finished())
        study.optimize(objective, n_trials=tune.trials - done, timeout=tune.minutes * 60 if tune.minutes else None,
                       callbacks=[cap], catch=(Exception,), gc_after_trial=True)


class _Objective:
    """One trial: the searched values on top of the strategy's params, trained in an MLflow run
    nested under the strategy's, reported to the pruner at each validation check. Keeps the
    best model this process trained as `kept` = (trial number, Trained, its value)."""

    def __init__(self, inputs: StrategyInputs, settings: Settings, space: dict[str, Space], study: str,
                 experiment_id: str, parent_run_id: str):
        self.inputs, self.settings, self.space, self.study = inputs, settings, space, study
        self.experiment_id, self.parent = experiment_id, parent_run_id
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.kept: tuple[int, Trained, float] | None = None

    def __call__(self, trial) -> float:
        import optuna

        values = {n: suggest(trial, n, s) for n, s in self.space.items()}
        trial.set_user_attr("worker", self.worker)
        inputs = replace(self.inputs, params=replace(self.inputs.params, **values), trained=None)  # params check themselves
        desc = f"{inputs.name} trial {trial.number}"

        def check(step: int, loss: float) -> None:
            mlflow.log_metric("val_loss", loss, step=step)
            trial.report(loss, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation loss {loss:.4f} at step {step} trails the median")

        trained = None
        with mlflow.start_run(experiment_id=self.experiment_id, run_name=desc, nested=True, parent_run_id=self.parent,
                              tags={"tune.study": self.study, "tune.trial": str(trial.number), "strategy": inputs.name,
                                    "tune.worker": self.worker}):
            mlflow.log_params({f"trial.{k}": v for k, v in values.items()})
            try:
                trained = build_and_train(inputs, self.settings.train, desc, on_check=check)
            except optuna.TrialPruned:
                mlflow.set_tag("tune.state", "pruned")
            else:
                value = best_val_loss(trained)
                mlflow.log_metric("best_val_loss", value)
                mlflow.set_tag("tune.state", "complete")
        _drop_checkpoints(desc)
        if trained is None:
            raise optuna.TrialPruned()
        if self.kept is None or value < self.kept[2]:
            self.kept = (trial.number, trained, value)
        return value


def _drop_checkpoints(desc: str) -> None:
    """A trial's checkpoints are never resumed (a retry starts a new trial): free the disk now
    (a MiniLM full fine-tuning checkpoint is ~270 MB) rather than when the strategy ends."""
    import shutil

    from tasks.training import checkpoint

    ckpt = checkpoint.active()
    if ckpt is not None:
        shutil.rmtree(ckpt.for_run(desc), ignore_errors=True)


def _finished() -> tuple:
    """The trial states that count toward the budget: complete and pruned (a failed trial, e.g.
    an MLflow outage, does not use it up; a study that only fails is refused above)."""
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED)


def _record(t) -> TrialRecord:
    curve = sorted((int(step), float(v)) for step, v in t.intermediate_values.items())
    return TrialRecord(t.number, t.state.name, t.value if t.state.name == "COMPLETE" else None,
                       dict(t.params), curve[-1][0] if curve else None, curve, t.user_attrs.get("worker", "?"))


def log_tuned(tuned: Tuned) -> None:
    """The chosen params, the study's figures and its whole history on the strategy's run."""
    mlflow.log_params({f"tune.chosen.{k}": v for k, v in tuned.chosen.items()} | {"tune.study": tuned.study})
    mlflow.log_metrics(tuned.metrics())
    mlflow.log_dict(tuned.record(), "tuning.json")


