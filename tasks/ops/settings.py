"""The `ops:` section of params.yaml, validated where it is owned (like `serving:`)."""
from __future__ import annotations

from dataclasses import dataclass, fields

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
    checkpoint_every_steps: int = 100    # optimizer steps between training checkpoints
    checkpoint_dir: str = ".cache/checkpoints"   # under the project; <parent run>/<strategy>/...
    tracking_check_seconds: float = 20.0 # how long an unreachable MLflow is retried at start
    retrain_cron: str = "0 3 * * 1"      # the `retrain` deployment's schedule (weekly by default)
    retrain_timezone: str = "UTC"
    gpus: int = 0                        # > 1: strategy processes start under `accelerate launch`

    def __post_init__(self):
        def need(cond: bool, message: str) -> None:
            if not cond:
                raise ValueError(f"params: section 'ops': {message}")

        need(self.task_runner in RUNNERS, f"task_runner must be one of {', '.join(RUNNERS)}, not {self.task_runner!r}")
        need(self.isolation in ISOLATION, f"isolation must be one of {', '.join(ISOLATION)}, not {self.isolation!r}")
        need(self.dask_workers >= 1, "dask_workers must be >= 1")
        need(self.retries >= 0 and self.retry_delay_seconds >= 0, "retries and retry_delay_seconds must be >= 0")
        need(self.checkpoint_every_steps >= 1, "checkpoint_every_steps must be >= 1")
        need(self.tracking_check_seconds > 0, "tracking_check_seconds must be positive")
        need(len(self.retrain_cron.split()) == 5, f"retrain_cron must have 5 fields, not {self.retrain_cron!r}")
        need(self.gpus >= 0, "gpus must be >= 0")


def ops_settings(raw: dict | None) -> OpsSettings:
    from tasks.config import SettingsError

    known = {f.name for f in fields(OpsSettings)}
    unknown = sorted(set(raw or {}) - known)
    if unknown:
        raise SettingsError(f"params: unknown key(s) {', '.join('ops.' + k for k in unknown)}; "
                            f"known keys in 'ops': {', '.join(sorted(known))}")
    try:
        return OpsSettings(**(raw or {}))
    except (TypeError, ValueError) as exc:
        raise SettingsError(str(exc)) from exc
