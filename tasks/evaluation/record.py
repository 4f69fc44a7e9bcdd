"""The run record: what one finished strategy run leaves behind for the comparison and the
registry (the metric names every run logs, so any two runs compare, are the catalogue's)."""
from __future__ import annotations

from dataclasses import dataclass

from tasks.models.base import ResolvedBase

# The metric names every strategy run logs are the catalogue's (tasks/tasktypes/metrics.py:
# `recorded(task)`); trained strategies add train_examples_per_s, overfit_flag and the loss
# curves, prompting ones prompt_variant_std, a policy with min_confidence abstention_rate and
# answered_accuracy.


@dataclass(frozen=True)
class StrategyResult:
    strategy: str
    run_id: str                  # its MLflow child run
    model_uri: str               # its logged model (models:/<id>)
    saves: str                   # adapter | full_model | config_only
    metrics: dict[str, float]
    base: ResolvedBase           # the base it was built on (a strategy may name its own)
    params: dict                 # the effective strategy params (the chosen prompt variant)
