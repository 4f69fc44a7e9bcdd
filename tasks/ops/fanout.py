"""Train every strategy, each apart from the others: one failing (an exception, or its process
killed) is retried by Prefect (ops.retries), then recorded as a FAILED child run with its
error, and the rest go on. With ops.task_runner: dask the strategies run in parallel on a Dask
cluster (a LocalCluster of ops.dask_workers processes, or the scheduler at ops.dask_address).
"""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from tasks.config import OpsSettings, Settings
from tasks.evaluation.record import StrategyResult
from tasks.errors import UserError
from tasks.training.context import RunContext

if TYPE_CHECKING:
    from tasks.ops.fork_server import ForkServer


@dataclass(frozen=True)
class Trained:
    results: list[StrategyResult]                          # the strategies that finished, in order
    failures: dict[str, str] = field(default_factory=dict)  # strategy -> its error (after retries)


class AllStrategiesFailed(RuntimeError, UserError):
    """No strategy finished: nothing to register."""


def checkpoint_folder(ctx: RunContext, name: str) -> Path:
    """Per flow run (its MLflow parent run) and strategy: a retry resumes, a new run starts afresh."""
    return ctx.settings.path(ctx.settings.ops.checkpoint_dir) / ctx.parent_run_id / name


def forks_strategies(settings: Settings) -> bool:
    """Whether a run forks its strategy processes from a fork server: one process per strategy
    (ops.isolation: process), one strategy at a time, one training process each."""
    ops = settings.ops
    return ops.isolation == "process" and ops.task_runner == "sequential" and settings.train.processes == 1


@contextmanager
def fork_server(settings: Settings) -> Iterator[ForkServer | None]:
    """The fork server (tasks/ops/fork_server.py) for a run that starts one process per strategy,
    one after another: it imports while the data is validated. None for other layouts (in the
    flow's process, on Dask, or under `accelerate launch`). `adaptflow run` starts it before its
    own imports (fork_server.start_early); the flow takes that one."""
    from tasks.ops.fork_server import started_for
    from tasks.tracking import tracking_uri

    if not forks_strategies(settings):
        yield None
        return
    server = started_for(tracking_uri(settings.root))
    try:
        yield server
    finally:
        server.close()


@task(name="train + evaluate", task_run_name="strategy: {name}", cache_policy=NO_CACHE)
def train_strategy(name: str, ctx: RunContext, forks: ForkServer | None = None) -> StrategyResult:
    from tasks.ops.failures import record_failure
    from tasks.ops.isolate import Job, run_in_process
    from tasks.tracking import use_store

    ops = ctx.settings.ops
    uri = use_store(ctx.settings.root)    # a Dask worker is a fresh process
    attempt = TaskRunContext.get().task_run.run_count
    folder = checkpoint_folder(ctx, name)
    logger = get_run_logger()
    try:
        if ops.isolation == "process":
            result = run_in_process(Job(name, ctx, str(folder), uri), forks)
        else:   # torch and the strategies: imported here only, not in a flow that forks its strategies
            from tasks.training.checkpoint import checkpointing
            from tasks.training.run import run_strategy

            with checkpointing(folder, ops.checkpoint_every_steps):
                result = run_strategy(ctx, name)
    except BaseException as exc:   # SystemExit (SIGTERM) too: the run must not stay RUNNING
        will_retry = isinstance(exc, Exception) and attempt <= ops.retries
        try:
            record_failure(ctx.experiment_id, ctx.parent_run_id, name, exc, attempt, will_retry)
        except Exception as record_exc:   # MLflow down too: the original error matters more
            logger.warning("%s: could not record the failure in MLflow: %s", name, record_exc)
        logger.error("%s failed (attempt %d%s): %s", name, attempt, ", will retry" if will_retry else "", exc)
        raise
    shutil.rmtree(folder, ignore_errors=True)   # a finished strategy needs no checkpoint (MiniLM full: ~270 MB)
    shown = [k for k in ("test_accuracy", "test_macro_f1", "test_rougeL", "test_chrf") if k in result.metrics]
    logger.info("%s: %s", name, " ".join(f"{k}={result.metrics[k]:.4f}" for k in shown))
    return result


def task_runner(ops: OpsSettings):
    from prefect_dask import DaskTaskRunner

    if ops.dask_address:
        return DaskTaskRunner(address=ops.dask_address)
    # One thread per worker process: torch already uses train.threads inside each, and two
    # workers on this 2-core machine means one strategy per core.
    return DaskTaskRunner(cluster_kwargs={"n_workers": ops.dask_workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


def shared_threads(settings: Settings) -> Settings:
    """On a LocalCluster the strategies train side by side on this machine's cores, so they share
    train.threads: two strategies of 2 threads each on 2 cores put 4 OpenMP threads there, and
    idle ones spin for the core the other needs. A MiniLM-sized step loop, two processes at once
    on the 2-core AMD EPYC: 69-126 s with 2 threads each, 36-37 s with 1 (docs/performance.md).
    A remote scheduler's workers are their own machines: unchanged."""
    ops, train = settings.ops, settings.train
    if ops.task_runner != "dask" or ops.dask_address:
        return settings
    return replace(settings, train=replace(train, threads=max(1, train.threads // ops.dask_workers)))


def train_strategies(ctx: RunContext, forks: ForkServer | None = None) -> Trained:
    ops, names = ctx.settings.ops, list(ctx.settings.strategies)
    step = train_strategy.with_options(retries=ops.retries, retry_delay_seconds=ops.retry_delay_seconds)
    if ops.task_runner == "dask":
        ctx = replace(ctx, settings=shared_threads(ctx.settings))
        with task_runner(ops) as runner:
            futures = [runner.submit(step, {"name": n, "ctx": ctx}) for n in names]
            for f in futures:
                f.wait()
            states = [f.state for f in futures]
    else:   # one after another, in the flow's own thread
        states = [step(n, ctx, forks, return_state=True) for n in names]
    results, failures = [], {}
    for name, state in zip(names, states):
        if state.is_completed():
            results.append(state.result())
        else:
            exc = state.result(raise_on_failure=False)
            failures[name] = f"{type(exc).__name__}: {exc}"[:2000]
    if not results:
        raise AllStrategiesFailed("every strategy failed: " + "; ".join(f"{k}: {v}" for k, v in failures.items()))
    return Trained(results, failures)
