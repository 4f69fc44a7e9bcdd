"""One strategy in a Python process of its own (ops.isolation: process).

Why: a strategy that dies hard (SIGKILL, the kernel's OOM killer, a segfault in a native
library) then takes down only its process; the task sees a clear error, Prefect retries it
(ops.retries) and training resumes from its last checkpoint. Cost: the new process imports
torch, transformers and MLflow again (a few seconds; more on a loaded machine).

The job (strategy name, run context, checkpoint folder) goes to the process as a pickle;
the result, or the exception, comes back the same way.

Spares: with one process per strategy (train.processes: 1), the next strategy's process is
started before its job is known (`Spares`), so its imports and first-use loading (about 6 s on
2 cores) overlap the data gates or the previous strategy's training instead of adding to the run.
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


WAIT_FLAG = "--wait-for-job"


class Spares:
    """Strategy processes started ahead of their jobs: each imports what a strategy needs, then
    waits for one job on its stdin (tab-separated job file, result file, strategy name) and runs
    it as `python -m tasks.ops.strategy_process JOB OUT` would. `take` hands one out and starts
    the next while jobs remain; `close` kills an unused one (it holds nothing but imports). If
    the flow's process dies, a spare reads EOF on its stdin and exits."""

    def __init__(self, tracking_uri: str, jobs: int):
        self.tracking_uri, self.remaining, self.waiting = tracking_uri, jobs, None
        self._start()

    def _start(self) -> None:
        self.waiting = None
        if self.remaining > 0:
            env = {**os.environ, "MLFLOW_TRACKING_URI": self.tracking_uri, "ADAPTFLOW_STRATEGY_PROCESS": "spare"}
            self.waiting = subprocess.Popen([sys.executable, "-m", "tasks.ops.strategy_process", WAIT_FLAG],
                                            stdin=subprocess.PIPE, env=env, text=True)

    def take(self, job_file: Path, out_file: Path, name: str) -> subprocess.Popen | None:
        """A warm process running this job, or None (none left, or the spare died: start one)."""
        proc, self.remaining = self.waiting, self.remaining - 1
        self._start()   # the next strategy's imports overlap this one's training
        if proc is None or proc.poll() is not None:
            return None
        try:
            proc.stdin.write(f"{job_file}\t{out_file}\t{name}\n")
            proc.stdin.close()
        except (BrokenPipeError, OSError):   # it died between poll and write
            proc.wait()
            return None
        return proc

    def close(self) -> None:
        """End an unused spare now (it holds nothing but imports; waiting for them would cost seconds)."""
        if self.waiting is not None:
            self.waiting.kill()
            self.waiting.wait()
            self.waiting.stdin.close()
            self.waiting = None


def run_in_process(job: Job, spares: Spares | None = None) -> object:
    """Run the job in a child process (a warm spare when given) and return its StrategyResult
    (or raise its error)."""
    with tempfile.TemporaryDirectory(prefix=f"adaptflow-{job.name}-") as tmp:
        job_file, out_file = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        job_file.write_bytes(pickle.dumps(job))
        env = {**os.environ, "MLFLOW_TRACKING_URI": job.tracking_uri, "ADAPTFLOW_STRATEGY_PROCESS": job.name}
        warm = spares.take(job_file, out_file, job.name) if spares else None   # one process per job (spare_processes)
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


def _warm_up() -> None:
    """What every strategy process loads before it trains, loaded while nothing waits for it:
    3.1 s of module imports, then 2.5 s that transformers, PEFT and matplotlib import lazily on
    first use, and 0.7 s to open a SQLite MLflow store (AMD EPYC). Best effort: a failure here
    shows up again, with its real error, when the job runs."""
    try:
        import mlflow.pyfunc  # noqa: F401
        from mlflow.tracking import MlflowClient
        from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer  # noqa: F401

        import peft  # noqa: F401
        import tasks.training.run  # noqa: F401 -- torch and every strategy
        from tasks.evaluation.plots import pyplot

        pyplot()
        MlflowClient().search_experiments(max_results=1)   # MLFLOW_TRACKING_URI: the run's store
    except Exception:   # noqa: BLE001
        pass


def wait_for_job() -> int:
    """A spare (`Spares`): import what a strategy needs, then run the job named on stdin."""
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    _warm_up()
    freeze_loaded()
    line = sys.stdin.readline().rstrip("\n")
    if not line:   # not needed: the flow closed our stdin
        return 0
    job_file, out_file, name = line.split("\t")
    os.environ["ADAPTFLOW_STRATEGY_PROCESS"] = name
    return main(job_file, out_file)


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
