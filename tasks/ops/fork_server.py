"""A fork server for strategy processes: one process imports what a strategy needs, once, then
forks a fresh child for each strategy job (ops.isolation: process, one after another).

Why not a new process per strategy, started ahead of its job (the spares this replaces): on 2
cores each spare's imports ran beside the previous strategy's training and took a core from it.
`bench/overhead.py` on the AMX Xeon at a7f1c69: full_finetune's first 8 steps took 6 s in the
flow against 1.5 s in the bare script, lora's first 9 steps 7 s against 1.2 s; the two strategy
tasks 7.5 and 8.0 s longer than the bare script's. A forked child starts with the imports done
and nothing imports beside it.

Fork safety: the server runs no Python thread and no torch operation before it forks (torch's
OpenMP pool starts in the child, at its first parallel operation); the native threads its
imports start (OpenBLAS's pool, pyarrow's jemalloc) handle fork themselves. It opens no MLflow
store, so no database connection crosses a fork. It freezes what it has imported for the garbage
collector, so a child's collections do not touch, and so copy, those pages.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tasks.ops.collector import freeze_loaded
from tasks.ops.isolate import kill_tree, main
from tasks.ops.quick_exit import exit_now

FORK_SERVER_FLAG = "--fork-server"

# Servers started ahead of their flow (`adaptflow run` starts one before its own imports), by
# tracking URI: the flow takes its own (`started_for`) instead of starting another.
_started: dict[str, ForkServer] = {}


class ForkServer:
    """The flow's side: `fork` sends a job (job file, result file, strategy name) on the server's
    stdin and gets back the child's pid, then its exit code, on a pipe of their own (the children
    keep the flow's stdout and stderr for their logs). `close` kills the server and any child
    still running. If the flow's process dies, the server reads EOF and exits once its current
    child has."""

    def __init__(self, tracking_uri: str):
        replies, write_end = os.pipe()
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "ADAPTFLOW_STRATEGY_PROCESS": "fork-server"}
        self.process = subprocess.Popen([sys.executable, "-m", "tasks.ops.strategy_process", FORK_SERVER_FLAG,
                                         str(write_end)], stdin=subprocess.PIPE, env=env, text=True,
                                        pass_fds=(write_end,))
        os.close(write_end)
        self.replies = os.fdopen(replies, "r")

    def fork(self, job_file: Path, out_file: Path, name: str) -> Forked | None:
        """The job running in a forked child, or None when the server is gone (start a process)."""
        if self.process.poll() is not None:
            return None
        try:
            self.process.stdin.write(f"{job_file}\t{out_file}\t{name}\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):   # it died between poll and write
            return None
        pid = self.replies.readline()
        return Forked(int(pid), self) if pid else None

    def close(self) -> None:
        """End the server now (it holds nothing but imports; a refused run should not wait for
        them) and any child it left (run_in_process has ended its own on the way out)."""
        kill_tree(self.process.pid)
        self.process.wait()
        for pipe in (self.process.stdin, self.replies):
            try:
                pipe.close()
            except (BrokenPipeError, OSError):
                pass


def start_early(tracking_uri: str) -> ForkServer:
    """A server started now for a flow that starts later in this process: its imports (about 6 s
    of CPU) overlap the command's own and Prefect's server start instead of the data steps'."""
    server = _started[tracking_uri] = ForkServer(tracking_uri)
    return server


def started_for(tracking_uri: str) -> ForkServer:
    """The server started early for this store, if it is still running; otherwise a new one.
    Either way the caller owns it (and closes it)."""
    server = _started.pop(tracking_uri, None)
    if server is not None and server.process.poll() is None:
        return server
    if server is not None:
        server.close()
    return ForkServer(tracking_uri)


def close_unused() -> None:
    """Close the servers started early that no flow took (a run refused before its flow)."""
    while _started:
        _started.popitem()[1].close()


@dataclass(frozen=True)
class Forked:
    """A strategy's forked process, as far as run_in_process needs a Popen: its pid and its exit
    code (negative: killed by that signal)."""
    pid: int
    server: ForkServer

    def wait(self) -> int:
        code = self.server.replies.readline()
        if code:
            return int(code)
        # The server died while its child ran: the child, orphaned, is ended here.
        kill_tree(self.pid)
        return -signal.SIGKILL


def _warm_up() -> None:
    """What every strategy process loads before it trains: 3.1 s of module imports, then 2.5 s
    that transformers, PEFT and matplotlib import lazily on first use (AMD EPYC); MLflow's SQL
    store modules, and what MLflow builds lazily to log a model. The store itself is not opened:
    no connection crosses a fork, the flow may be creating its tables right now, and a child
    opens it in 0.04 s once this is imported. Best effort: a failure here shows up again, with
    its real error, when the job runs."""
    try:
        import mlflow.pyfunc  # noqa: F401
        import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer  # noqa: F401

        import peft  # noqa: F401
        import tasks.models.embedding  # noqa: F401 -- imports transformers' model outputs (1.1 s)
        import tasks.training.run  # noqa: F401 -- torch and every strategy
        from tasks.evaluation.plots import pyplot

        pyplot()
        # log_model checks the model's pip requirements against this environment through a map
        # of every installed distribution, built on first use: 0.34 s of each strategy's process.
        from mlflow.utils.requirements_utils import _init_packages_to_modules_map

        _init_packages_to_modules_map()
    except Exception:   # noqa: BLE001
        pass


def serve(reply_fd: int) -> int:
    """The server: warm up, then fork a child per job line on stdin until EOF. The child runs the
    job as `python -m tasks.ops.strategy_process JOB OUT` would and never returns here."""
    from tasks.env import apply_offline_defaults

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C: the flow ends the running child itself
    apply_offline_defaults()
    _warm_up()
    freeze_loaded()
    replies = os.fdopen(reply_fd, "w")
    for line in sys.stdin:
        job_file, out_file, name = line.rstrip("\n").split("\t")
        pid = os.fork()
        if pid == 0:
            _run_child(job_file, out_file, name, reply_fd)
        print(pid, file=replies, flush=True)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), file=replies, flush=True)
    return 0


def _run_child(job_file: str, out_file: str, name: str, reply_fd: int) -> None:
    """In the forked child: the server's pipes closed, Ctrl-C as usual, then the job; it ends the
    process whatever happens."""
    code = 1
    try:
        os.close(reply_fd)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ["ADAPTFLOW_STRATEGY_PROCESS"] = name
        code = main(job_file, out_file)
    finally:
        exit_now(code)
