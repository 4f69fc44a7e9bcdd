"""Whether bf16 pays on this CPU: one short measurement of a training-shaped step (two linear
layers, forward and backward) in fp32 and under bf16 autocast, cached per machine.

CPU flags do not answer it: the AMX Xeon of this fleet ran bf16 matmul 4.7x fp32, one AMD EPYC
2.3x, and the AMD EPYC measured on 2026-12-05 (no avx512 flags) 1 GFLOP/s against 99 (bf16 about
100x slower). The cache key holds the CPU model, its flags, torch's version, the thread count and
the step's shape, so a different machine, torch or probe measures again."""
from __future__ import annotations

import hashlib
import json
import platform
import time
from statistics import median_high
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from tasks.models.causal_lm import cache_root

CACHE_FILE = "cpu_precision.json"
# MiniLM's feed-forward shapes (hidden 384, intermediate 1536) over one full default training
# batch (train.batch_size 16 x model.max_length 64 tokens): about 7 GFLOP a step, 35 ms in fp32 at
# 209 GFLOP/s. At 256 tokens the AMX Xeon measured 1.38-2.15x in fresh processes: the small step's
# fixed costs (autocast's casts, Python, kernel dispatch) hid much of the matmul's gain, which a
# real batch gets.
TOKENS, HIDDEN, INTERMEDIATE = 1024, 384, 1536
# Warm-up steps per precision (oneDNN picks and builds its kernels on the first ones), then timed
# steps, the two precisions taking turns so a busy moment of the machine slows both alike. A
# precision slower than the budget stops at its warm-up: a CPU with slow bf16 (0.30 s a step at
# 256 tokens on one AMD EPYC) is not timed at length to learn that.
WARMUP, STEPS, BUDGET_SECONDS = 2, 5, 3.0
# One thread: the ratio is the core's (its matrix units), and one thread is not held up by what
# runs on the other core. On 2 threads each step waits at OpenMP's barrier for the slower core:
# beside Prefect's server starting, the AMX Xeon measured 1.01-1.41x there against 2.51-2.90x
# quiet; on one thread 2.80-3.17x beside it and 2.80-3.09x quiet (bench/precision_check.py).
PROBE_THREADS = 1


@dataclass(frozen=True)
class CpuPrecision:
    fp32_step_seconds: float
    bf16_step_seconds: float
    machine: str                 # the cache key: what the measurement is valid for
    measured_at: str

    @property
    def bf16_speedup(self) -> float:
        return self.fp32_step_seconds / self.bf16_step_seconds


def _cpu_identity() -> tuple[str, str]:
    """The CPU's model name and flags (/proc/cpuinfo's first processor; elsewhere, platform's name)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:   # not Linux
        pass
    return fields.get("model name") or platform.processor() or platform.machine(), fields.get("flags", "")


def machine_key(threads: int) -> str:
    model, flags = _cpu_identity()
    digest = hashlib.sha256(flags.encode()).hexdigest()[:12]
    return (f"{model} | flags {digest} | torch {torch_version()} | {threads} threads"
            f" | step {TOKENS}x{HIDDEN}x{INTERMEDIATE}")


def torch_version() -> str:
    """The installed torch's version (torch.__version__, e.g. 2.13.0+cpu), read without importing
    torch (1 s): a run reads the cached measurement before anything else needs torch."""
    from importlib.metadata import version

    return version("torch")


def _step(bf16: bool) -> Callable[[], float]:
    """A forward + backward through two linear layers in fp32 or under bf16 autocast; each call
    returns its seconds."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(TOKENS, HIDDEN, generator=gen)
    up = torch.nn.Linear(HIDDEN, INTERMEDIATE)
    down = torch.nn.Linear(INTERMEDIATE, HIDDEN)

    def step() -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = down(torch.nn.functional.gelu(up(x)))
        out.float().sum().backward()
        return time.perf_counter() - start
    return step


def _step_seconds() -> tuple[float, float]:
    """Median seconds of the fp32 and the bf16 step: warmed up, then timed in turns while the
    budget lasts. A warm-up step over a quarter of the budget ends that precision's warm-up."""
    steps = {False: _step(False), True: _step(True)}
    deadline = time.perf_counter() + BUDGET_SECONDS
    last: dict[bool, float] = {}
    for bf16, step in steps.items():
        for _ in range(WARMUP):
            last[bf16] = step()
            if last[bf16] > BUDGET_SECONDS / 4:
                break
    timed: dict[bool, list[float]] = {False: [], True: []}
    while len(timed[True]) < STEPS and time.perf_counter() + last[False] + last[True] < deadline:
        for bf16, step in steps.items():
            timed[bf16].append(step())
    # the upper median, as the probe always took
    return median_high(timed[False] or [last[False]]), median_high(timed[True] or [last[True]])


def measure(threads: int = PROBE_THREADS) -> CpuPrecision:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fp32, bf16 = _step_seconds()
    finally:
        torch.set_num_threads(before)
    return CpuPrecision(fp32, bf16, machine_key(threads), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def cpu_precision(cache_dir: Path | None = None) -> CpuPrecision:
    """This machine's measurement, from the cache when one was made here with the same key."""
    path = (cache_dir or cache_root()) / CACHE_FILE
    key = machine_key(PROBE_THREADS)
    try:
        cached = json.loads(path.read_text()).get(key)
        if cached:
            return CpuPrecision(**cached)
    except (OSError, ValueError, TypeError):   # missing or unreadable: measure again
        pass
    result = measure()
    try:
        entries = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        entries = {}
    entries[key] = asdict(result)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        tmp.replace(path)
    except OSError:   # a read-only home: measured again next time, nothing else changes
        pass
    return result
