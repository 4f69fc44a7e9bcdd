"""One training loop for one process, several processes and gradient accumulation, through the
same `accelerate launch` command adaptflow builds for train.processes (gloo CPU processes here).
The model (tests/distributed_train.py) has no dropout, so every layout computes the same function."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import env_for_subprocess
from tasks.ops.accelerate_launch import command
from tasks.ops.isolate import kill_tree
from conftest import latest_step

TESTS = Path(__file__).resolve().parent
# Float sums in another order (two processes, or two micro-batches) differ by about 1e-7 after 8
# steps (measured: 1.15e-7) while the weights move by about 3e-2: 1e-5 tells them apart.
TOLERANCE = 1e-5


def launch(processes: int, out: Path, *args: str, wait: bool = True):
    cmd = command(processes, "distributed_train", [str(out), *args])
    if not wait:
        return subprocess.Popen(cmd, cwd=TESTS, env=env_for_subprocess(), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = subprocess.run(cmd, cwd=TESTS, env=env_for_subprocess(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.with_suffix(".json").read_text())


def max_difference(a: Path, b: Path) -> float:
    x, y = load_file(str(a)), load_file(str(b))
    assert x.keys() == y.keys()
    return max((x[k] - y[k]).abs().max().item() for k in x)


def moved(path: Path) -> float:
    from distributed_train import tiny_lora

    start = {n: p.detach() for n, p in tiny_lora().named_parameters() if p.requires_grad}
    trained = load_file(str(path))
    return max((trained[k] - start[k]).abs().max().item() for k in trained)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "w.safetensors"
    launch(1, out, "--batch-size", "16")
    return out


def test_two_processes_train_like_one_with_the_same_effective_batch(one_process, tmp_path):
    two = tmp_path / "two.safetensors"
    record = launch(2, two, "--batch-size", "8")   # 2 x 8 = 16, sharded by accelerate
    one = json.loads(one_process.with_suffix(".json").read_text())
    assert record["steps"] == one["steps"] == 8 and record["seen"] == one["seen"] == 128
    assert moved(two) > 100 * TOLERANCE
    assert max_difference(two, one_process) < TOLERANCE
    assert [round(v, 5) for _, v in record["val_loss"]] == [round(v, 5) for _, v in one["val_loss"]]


def test_gradient_accumulation_trains_like_the_larger_batch(one_process, tmp_path):
    accumulated = tmp_path / "acc.safetensors"
    record = launch(1, accumulated, "--batch-size", "8", "--accum", "2")   # 2 x 8 against 1 x 16
    assert record["steps"] == 8
    assert max_difference(accumulated, one_process) < TOLERANCE


def test_two_processes_resume_from_a_checkpoint_to_the_same_weights(tmp_path):
    args = ("--batch-size", "8", "--epochs", "20", "--examples", "128", "--every", "8")
    reference = tmp_path / "reference.safetensors"
    launch(2, reference, *args)                        # 160 steps, never interrupted
    folder, out = tmp_path / "ckpt", tmp_path / "resumed.safetensors"
    proc = launch(2, out, *args, "--checkpoint", str(folder), wait=False)
    first = folder / "tiny" / "checkpoint.pt"          # the main process's, at step 8
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    kill_tree(proc.pid)                                # the launcher and both training processes
    proc.wait()
    assert not out.exists(), "the run finished before it could be interrupted"
    record = launch(2, out, *args, "--checkpoint", str(folder))
    assert 0 < latest_step(folder) and 0 < record["resumed_from"] < 160 and record["steps"] == 160
    assert max_difference(out, reference) < TOLERANCE
    assert torch.equal(load_file(str(out))["base_model.model.classifier.modules_to_save.default.weight"],
                       load_file(str(reference))["base_model.model.classifier.modules_to_save.default.weight"])


def test_the_flow_trains_a_strategy_in_two_processes_and_records_it_once(harness, project_factory, tiny_bert):
    """train.processes: 2 through `adaptflow run`'s own path: the strategy's process starts under
    `accelerate launch`, both processes train, only the main one logs to MLflow and answers."""
    from mlflow.tracking import MlflowClient

    from flows.specialize import SpecializeInput, specialize
    from tasks.tracking import use_store

    project = project_factory({"model": {"base": str(tiny_bert)}, "train": {"processes": 2},
                               "profiles": {"smoke": {"ops": {"isolation": "process"}}}})
    out = specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke", strategies=["lora"]))
    assert not out.failed and out.candidate == "lora"
    use_store(project)
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("adaptflow-rotten-tomatoes").experiment_id],
                              f"tags.mlflow.parentRunId = '{out.parent_run_id}'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    params = runs[0].data.params
    assert params["train.processes"] == "2" and params["train.device_used"] == "cpu"
    assert params["train.effective_batch"] == str(2 * int(params["train.batch_size"]))
    assert runs[0].data.metrics["test_accuracy"] > 0
