"""The command that starts a strategy's process: plain Python on CPU or one GPU; with two or
more GPUs, `accelerate launch --multi_gpu` with one process per GPU.

What runs under it: the same `run_strategy`; accelerate sets WORLD_SIZE / LOCAL_RANK for each
process. This machine has no GPU, so only the command is tested here (tests/test_ops_decisions.py);
the data-parallel wrapping of the training loop is not built (see infra/README.md).
"""
from __future__ import annotations

import sys


def command(gpus: int, module: str, args: list[str], python: str | None = None) -> list[str]:
    python = python or sys.executable
    if gpus <= 1:
        return [python, "-m", module, *args]
    return [python, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(gpus),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--module", module, *args]
