"""`tune:` -- hyperparameter search per trained strategy before its final training (Optuna;
tasks/training/tuning.py). Each strategy declares its search space next to its params
(tasks/strategies/*.py, `SEARCH`); `spaces` overrides it here."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tasks.config.schema import require

PRUNERS = ("median", "none")


@dataclass(frozen=True)
class TuneSettings:
    enabled: bool = False            # `adaptflow run --tune` (or the Prefect form's `tune`)
    trials: int = 6                  # per strategy, counted over every process that shares its study
    minutes: float | None = None     # per strategy: no trial starts after this many minutes (null: no limit)
    # Stops a trial whose validation loss is worse than the median of the trials before it at the
    # same step, once `startup_trials` trials finished and after `warmup_checks` checks of its own.
    pruner: str = "median"
    startup_trials: int = 2
    warmup_checks: int = 1
    sampler_seed: int | None = None  # TPE sampler seed; null: train.seed
    # Where studies live: a file under the project (SQLite), or a database URL that several
    # workers share (postgresql+psycopg2://...), or env:NAME to read that URL from the environment
    # (the production profile: the password stays out of params).
    storage: str = "mlflow/optuna.db"
    spaces: dict[str, dict[str, Any]] = field(default_factory=dict)   # strategy -> param -> range/choices

    def __post_init__(self):
        require(self.trials >= 1, "trials must be >= 1")
        require(self.minutes is None or self.minutes > 0, "minutes must be positive (or null: no time limit)")
        require(self.pruner in PRUNERS, f"pruner must be one of {', '.join(PRUNERS)}, not {self.pruner!r}")
        require(self.startup_trials >= 0 and self.warmup_checks >= 0, "startup_trials and warmup_checks must be >= 0")
        require(bool(self.storage.strip()), "storage must be a file path or a database URL")

    @property
    def is_url(self) -> bool:
        from tasks.config.stores import is_url

        return is_url(self.storage)
