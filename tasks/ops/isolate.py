"""One strategy in a Python process of its own (ops.isolation: process).

Why: a strategy that dies hard (SIGKILL, the kernel's OOM killer, a segfault in a native
library) then takes down only its process; the task sees a clear error, Prefect retries it
(ops.retries) and training resumes from its last checkpoint. Cost: a new process imports
torch, transformers and MLflow again (about 6 s on 2 cores), unless it is forked warm.

The job (strategy name, run context, checkpoint folder) goes to the process as a pickle;
the result, or the exception, comes back the same way.

With one process per strategy (train.processes: 1), each is forked by a fork server that
imported what a strategy needs while the data was validated (tasks/ops/fork_server.py).
"""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tasks.ops.collector import freeze_loaded
from tasks.training.context import RunContext


class StrategyProcessDied(RuntimeError):
    """The strategy's process ended without a result (killed by a signal, or crashed)."""


class StrategyFailed(RuntimeError):
    """The strategy raised in its own process and the exception could not be sent back as is."""


@dataclass(frozen=True)
class Job:
    name: str
    ctx: RunContext
    checkpoint_dir: str            # this strategy's (ctx.settings.ops says how often)
    tracking_uri: str


def launch_command(job: Job, job_file: Path, out: Path) -> list[str]:
    """`python -m tasks.ops.strategy_process JOB OUT`; with train.processes of 2+, the same module
    under `accelerate launch` in that many processes (see tasks/ops/accelerate_launch.py)."""
    from tasks.ops.accelerate_launch import command
    from tasks.training.hardware import check_hardware, threads_per_process

    train = job.ctx.settings.train
    threads = threads_per_process(train, check_hardware(train)) if train.processes > 1 else train.threads
    return command(train.processes, "tasks.ops.strategy_process", [str(job_file), str(out)],
                   threads_per_process=threads)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything below it: under `accelerate launch` the training
    processes are started in sessions of their own and would outlive their launcher."""
    import psutil

    try:
        root = psutil.Process(pid)
        below = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for p in [root, *below]:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    # Not the root: its parent reaps it (psutil would, and Popen.wait would then see no child).
    psutil.wait_procs(below, timeout=10)


class Forks(Protocol):
    """What forks a warm child for a job (tasks/ops/fork_server.py: ForkServer): something with a
    pid and wait() -> exit code, or None when it cannot."""
    def fork(self, job_file: Path, out_file: Path, name: str): ...


def run_in_process(job: Job, forks: Forks | None = None) -> object:
    """Run the job in a child process (forked by the fork server when given) and return its
    StrategyResult (or raise its error)."""
    with tempfile.TemporaryDirectory(prefix=f"adaptflow-{job.name}-") as tmp:
        job_file, out_file = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        job_file.write_bytes(pickle.dumps(job))
        env = {**os.environ, "MLFLOW_TRACKING_URI": job.tracking_uri, "ADAPTFLOW_STRATEGY_PROCESS": job.name}
        warm = forks.fork(job_file, out_file, job.name) if forks else None   # None: no server, or it died
        proc = warm or subprocess.Popen(launch_command(job, job_file, out_file), env=env)
        try:
            code = proc.wait()
        except BaseException:   # the flow is stopping (SIGTERM, Ctrl-C): take the child with it
            kill_tree(proc.pid)
            proc.wait()
            raise
        if code < 0:
            raise StrategyProcessDied(f"{job.name}: the strategy's process (pid {proc.pid}) was killed by "
                                      f"{signal.Signals(-code).name}")
        if not out_file.is_file():
            raise StrategyProcessDied(f"{job.name}: the strategy's process (pid {proc.pid}) exited with "
                                      f"code {code} and no result")
        ok, payload = pickle.loads(out_file.read_bytes())
    if ok:
        return payload
    raise payload


def main(job_file: str, out_file: str) -> int:
    from tasks.env import apply_offline_defaults
    from tasks.training.checkpoint import checkpointing

    apply_offline_defaults()
    job: Job = pickle.loads(Path(job_file).read_bytes())
    import mlflow
    from tasks.training.run import run_strategy

    freeze_loaded()

    mlflow.set_tracking_uri(job.tracking_uri)
    mlflow.set_registry_uri(job.tracking_uri)
    try:
        with checkpointing(Path(job.checkpoint_dir), job.ctx.settings.ops.checkpoint_every_steps):
            result = run_strategy(job.ctx, job.name)
        if result is None:   # another process of an `accelerate launch`: the main one reports
            return 0
        outcome = (True, result)
    except Exception as exc:   # sent back to the task, which records it and lets Prefect retry
        import traceback

        traceback.print_exc()
        try:
            pickle.loads(pickle.dumps(exc))
            outcome = (False, exc)
        except Exception:
            outcome = (False, StrategyFailed(f"{type(exc).__name__}: {exc}"))
    Path(out_file).write_bytes(pickle.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
