"""Whether bf16 pays on this CPU: one short measurement of a training-shaped step (two linear
layers, forward and backward) in fp32 and under bf16 autocast, cached per machine.

CPU flags do not answer it: the AMX Xeon of this fleet ran bf16 matmul 4.7x fp32, one AMD EPYC
2.3x, and the AMD EPYC measured on 2026-12-05 (no avx512 flags) 1 GFLOP/s against 99 (bf16 about
100x slower). The cache key holds the CPU model, its flags, torch's version and the thread count,
so a different machine or torch measures again."""
from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tasks.models.causal_lm import cache_root

CACHE_FILE = "cpu_precision.json"
# MiniLM's feed-forward shapes (hidden 384, intermediate 1536) over 256 tokens: about 0.9 GFLOP a
# step, 9 ms in fp32 at 100 GFLOP/s. A slow precision stops at the time budget, not at the count.
TOKENS, HIDDEN, INTERMEDIATE = 256, 384, 1536
STEPS, BUDGET_SECONDS = 5, 1.0


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
    return f"{model} | flags {digest} | torch {torch_version()} | {threads} threads"


def torch_version() -> str:
    """The installed torch's version (torch.__version__, e.g. 2.13.0+cpu), read without importing
    torch (1 s): a run reads the cached measurement before anything else needs torch."""
    from importlib.metadata import version

    return version("torch")


def _step_seconds(bf16: bool) -> float:
    """Median seconds of a forward + backward through two linear layers, within the budget."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(TOKENS, HIDDEN, generator=gen)
    up = torch.nn.Linear(HIDDEN, INTERMEDIATE)
    down = torch.nn.Linear(INTERMEDIATE, HIDDEN)
    times: list[float] = []
    deadline = time.perf_counter() + BUDGET_SECONDS
    for _ in range(STEPS + 1):   # the first is a warm-up (oneDNN picks its kernels)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = down(torch.nn.functional.gelu(up(x)))
        out.float().sum().backward()
        times.append(time.perf_counter() - start)
        if time.perf_counter() > deadline and len(times) >= 2:
            break
    timed = sorted(times[1:])
    return timed[len(timed) // 2]


def measure(threads: int) -> CpuPrecision:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fp32, bf16 = _step_seconds(False), _step_seconds(True)
    finally:
        torch.set_num_threads(before)
    return CpuPrecision(fp32, bf16, machine_key(threads), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def cpu_precision(threads: int, cache_dir: Path | None = None) -> CpuPrecision:
    """This machine's measurement, from the cache when one was made here with the same key."""
    path = (cache_dir or cache_root()) / CACHE_FILE
    key = machine_key(threads)
    try:
        cached = json.loads(path.read_text()).get(key)
        if cached:
            return CpuPrecision(**cached)
    except (OSError, ValueError, TypeError):   # missing or unreadable: measure again
        pass
    result = measure(threads)
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
