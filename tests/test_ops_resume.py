"""Kill and resume: the process training a strategy is killed with SIGKILL mid-training; Prefect
retries the strategy and its training goes on from the last checkpoint, not from step 0. The
killed attempt stays in MLflow as a FAILED child run naming the signal."""
from __future__ import annotations

import signal
import threading
import time

import psutil
from mlflow.tracking import MlflowClient

from flows.specialize import SpecializeInput, specialize
from tasks.tracking import use_store
from conftest import latest_step
from tasks.training.checkpoint import FILE

EXPERIMENT = "adaptflow-rotten-tomatoes"


def wait_until_dead(child: psutil.Process, timeout: float = 30) -> None:
    """Wait for the killed process without reaping it: psutil's wait() would call waitpid and
    take the exit status away from the flow's Popen.wait(), which then sees code 0 (ECHILD) and
    reports "exited with code 0 and no result" instead of the SIGKILL (seen once in CI)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)


def training_processes() -> list[psutil.Process]:
    """The strategy processes that train: forked by the fork server (whose command line they
    share), or started on their own; not the fork server itself."""
    def strategy(p: psutil.Process) -> bool:
        return "tasks.ops.strategy_process" in " ".join(p.cmdline())

    found = [p for p in psutil.Process().children(recursive=True) if strategy(p)]
    return [p for p in found if not any(strategy(c) for c in p.children())]


def kill_after_first_checkpoint(folder, killed: dict, timeout: float = 600) -> threading.Thread:
    """Wait for the strategy process's first checkpoint, then SIGKILL that process."""
    def act():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(folder.rglob(FILE)):
                for child in training_processes():
                    killed["forked"] = "tasks.ops.strategy_process" in " ".join(child.parent().cmdline())
                    child.send_signal(signal.SIGKILL)
                    wait_until_dead(child)
                    killed["pid"], killed["at"] = child.pid, time.monotonic()
                    killed["step"] = latest_step(folder)   # what the retry must resume from
                    return
            time.sleep(0.1)

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread


def test_a_killed_training_process_is_retried_and_resumes_from_its_checkpoint(harness, project_factory, tiny_bert):
    # 2,000 examples in batches of 8: 250 steps, a checkpoint every 10; one strategy, in its own process.
    project = project_factory({"model": {"base": str(tiny_bert)}, "strategies": {"run": ["full_finetune"]},
                               "profiles": {"smoke": {
                                   "train": {"max_train_examples": 2000, "batch_size": 8, "eval_every": 50},
                                   "ops": {"isolation": "process", "retries": 1, "retry_delay_seconds": 0,
                                           "checkpoint_every_steps": 10}}}})
    killed: dict = {}
    watcher = kill_after_first_checkpoint(project / ".cache" / "checkpoints", killed)
    started = time.monotonic()
    out = specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke"))
    elapsed = time.monotonic() - started
    watcher.join(timeout=5)
    assert killed, "the strategy process was never seen with a checkpoint"
    assert killed["forked"], "the strategy trained in a child of the fork server"
    assert out.candidate == "full_finetune" and not out.failed

    use_store(project)
    client = MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{out.parent_run_id}'",
                              order_by=["attributes.start_time ASC"])
    assert [r.info.status for r in runs] == ["FAILED", "FINISHED"]
    first, second = runs
    assert "killed by SIGKILL" in first.data.tags["error"] and first.data.tags["retried"] == "true"
    resumed = int(second.data.metrics["resumed_from_step"])
    assert resumed == killed["step"] > 0
    assert int(second.data.metrics["train_steps"]) == 250
    assert not (project / ".cache" / "checkpoints" / out.parent_run_id / "full_finetune").exists(), \
        "a finished strategy's checkpoints are removed"
    print(f"\nkilled pid {killed['pid']} at checkpoint step {killed['step']}; the retry resumed from step "
          f"{resumed} and finished at 250; flow {elapsed:.0f} s")
