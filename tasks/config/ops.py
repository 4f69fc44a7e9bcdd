"""The `ops:` section of params.yaml: how runs are carried out (tasks/ops/ acts on it)."""
from __future__ import annotations

from dataclasses import dataclass

from tasks.config.schema import require

RUNNERS = ("sequential", "dask")
ISOLATION = ("process", "none")


@dataclass(frozen=True)
class OpsSettings:
    task_runner: str = "sequential"      # sequential | dask: strategies in parallel on a Dask cluster
    dask_address: str | None = None      # a running scheduler (tcp://host:8786); None: a LocalCluster
    dask_workers: int = 2                # LocalCluster worker processes, one thread each
    isolation: str = "process"           # process: each strategy in a Python process of its own
    retries: int = 1                     # Prefect retries of a failed strategy (a killed process included)
    retry_delay_seconds: float = 5.0
    checkpoint_every_steps: int = 500    # optimizer steps between training checkpoints (params.yaml: why)
    checkpoint_dir: str = ".cache/checkpoints"   # under the project; <parent run>/<strategy>/...
    tracking_check_seconds: float = 20.0 # how long an unreachable MLflow is retried at start
    data_lock_timeout_seconds: float = 1800.0   # how long a run waits for another's data steps (tasks/data/lock.py)
    reuse_passed_gates: bool = True      # a gate that passed on the same data and contract is not run again
    retrain_cron: str = "0 3 * * 1"      # the `retrain` deployment's schedule (weekly by default)
    retrain_timezone: str = "UTC"

    def __post_init__(self):
        require(self.task_runner in RUNNERS, f"task_runner must be one of {', '.join(RUNNERS)}, not {self.task_runner!r}")
        require(self.isolation in ISOLATION, f"isolation must be one of {', '.join(ISOLATION)}, not {self.isolation!r}")
        require(self.dask_workers >= 1, "dask_workers must be >= 1")
        require(self.retries >= 0 and self.retry_delay_seconds >= 0, "retries and retry_delay_seconds must be >= 0")
        require(self.checkpoint_every_steps >= 1, "checkpoint_every_steps must be >= 1")
        require(self.tracking_check_seconds > 0, "tracking_check_seconds must be positive")
        require(self.data_lock_timeout_seconds > 0, "data_lock_timeout_seconds must be positive")
        require(len(self.retrain_cron.split()) == 5, f"retrain_cron must have 5 fields, not {self.retrain_cron!r}")
