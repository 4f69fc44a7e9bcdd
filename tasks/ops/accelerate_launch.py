"""The command that starts a strategy's process: plain Python for one process; for train.processes
of 2 or more, `accelerate launch` with one process per GPU, or, on a machine without GPUs,
that many CPU processes talking over gloo (accelerate's multi-process launcher, `--multi_gpu`,
starts them either way; the Accelerator inside each picks CUDA or gloo from train.device).

What runs under it: the same `run_strategy` in every process; accelerate sets RANK / WORLD_SIZE
/ LOCAL_RANK, the loop shards the data, and only the main process records the run.
"""
from __future__ import annotations

import sys


def command(processes: int, module: str, args: list[str], python: str | None = None,
            threads_per_process: int = 1, port: int | None = None) -> list[str]:
    """`port`: where the processes meet (default: a free one). accelerate's default, 29500, is
    one port per machine: two multi-process runs at once (two users, or two test workers) would
    meet each other's processes."""
    python = python or sys.executable
    if processes <= 1:
        return [python, "-m", module, *args]
    from tasks.ops.servers import free_port

    return [python, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--main_process_port", str(port or free_port()),
            "--mixed_precision", "no", "--dynamo_backend", "no",
            "--num_cpu_threads_per_process", str(threads_per_process), "--module", module, *args]
