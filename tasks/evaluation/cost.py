"""Cost measurements taken the same way for every strategy: trainable parameters, latency at
batch size 1, throughput at batch size 32 (of the adapter merged into its base too), and the
process's peak resident memory while a strategy runs."""
from __future__ import annotations

import statistics
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np
import psutil
import torch
from torch import nn

from tasks.models.encoding import Encoded, collate, on_device


@dataclass(frozen=True)
class Speed:
    latency_ms_p50: float
    latency_ms_p95: float
    throughput_examples_per_s: float


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total): trainable is exactly what the optimizer updates, head included."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def size_metrics(model: nn.Module) -> dict[str, float]:
    trainable, total = count_parameters(model)
    return {"trainable_params": float(trainable), "trainable_fraction": trainable / total,
            "model_params": float(total)}   # what a serving copy holds (params cost: reads it)


@torch.no_grad()
def measure_speed(model: nn.Module, data: Encoded, pad_id: int, singles: int, batches: int,
                  batch_size: int = 32) -> Speed:
    """p50/p95 over `singles` one-example calls, and examples/s over `batches` calls of 32,
    on real test examples (the first ones, so every strategy sees the same inputs)."""
    model.eval()
    n = len(data)
    call = lambda rows: _synced(model, collate(rows, pad_id))
    call([data.input_ids[0]])   # warm-up: first-call allocations are not latency
    times = []
    for i in range(min(singles, n)):
        start = time.perf_counter()
        call([data.input_ids[i]])
        times.append(1000 * (time.perf_counter() - start))
    rows = [data.input_ids[i % n] for i in range(batches * batch_size)]
    start = time.perf_counter()
    for b in range(batches):
        call(rows[b * batch_size:(b + 1) * batch_size])
    elapsed = time.perf_counter() - start
    return Speed(statistics.median(times), float(np.percentile(times, 95)), len(rows) / elapsed)


def _synced(model: nn.Module, inputs: dict[str, torch.Tensor]):
    """One forward pass, finished when it returns (a GPU runs asynchronously)."""
    out = model(**on_device(inputs, model))
    if next(model.parameters()).is_cuda:
        torch.cuda.synchronize()
    return out


class PeakRSS:
    """Samples this process's RSS every 0.2 s while active; `.peak_mb` afterwards."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak_mb = interval, 0.0
        self._stop = threading.Event()
        self._proc = psutil.Process()

    def _sample(self) -> None:
        self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "PeakRSS":
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


@torch.no_grad()
def merged_speed_metrics(model: nn.Module, merge, data: Encoded, pad_id: int, singles: int,
                         batches: int) -> dict[str, float]:
    """Latency and throughput of the merged copy, measured exactly like the adapter's, and the
    largest logit difference between the two on a batch of test examples (should be ~1e-6)."""
    merged = merge(model)
    batch = on_device(collate(data.input_ids[:32], pad_id), model)
    diff = (merged(**batch).logits - model(**batch).logits).abs().max().item()
    speed = {f"merged_{k}": v for k, v in asdict(measure_speed(merged, data, pad_id, singles, batches)).items()}
    return speed | {"merged_max_abs_logit_diff": diff}


# ---- what serving pays per batch for holding many versions on one base ----
# bench/serving.py --tenants measured (AMD EPYC, 2 cores): 32 LoRA versions of MiniLM on one base,
# one version per batch, ran 13.5 requests/s where one version alone runs batch-1 calls at ~35/s:
# each batch paid a switch (PEFT's set_adapter walks every module and sets requires_grad on every
# version's layers, so it grows with the versions loaded), which the batch-1 latency does not
# contain. Mixed batches pay instead for each distinct version in the pass (each LoRA layer picks
# the rows' weights from its stack of versions: tasks/strategies/_lora_mixed.py). Both are
# measured here on the run's own saved version.


def switch_ms(versions: list, rounds: int = 24) -> float:
    """Median ms to make a shared base answer as another version: `versions` are held versions
    (tasks/strategies/sharing.py: `Attached`), switched round-robin so every call switches."""
    versions[0].model()
    times = []
    for i in range(1, rounds + 1):
        start = time.perf_counter()
        versions[i % len(versions)].model()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


@torch.no_grad()
def mixed_pass_ms(forward_mixed, model: nn.Module, data: Encoded, pad_id: int, names: list[str],
                  repeats: int = 5) -> tuple[float, float]:
    """(ms for a pass of len(names) test rows all answered by one version, ms for the same rows
    each answered by names[i]): median of `repeats` interleaved pairs."""
    model.eval()
    rows = [data.input_ids[i % len(data)] for i in range(len(names))]
    inputs = on_device(collate(rows, pad_id), model)
    timed = lambda row_names: _timed(lambda: forward_mixed(model, inputs, row_names))
    timed(names)   # warm-up
    same, mixed = [], []
    for _ in range(repeats):
        same.append(timed([names[0]] * len(names)))
        mixed.append(timed(names))
    return statistics.median(same), statistics.median(mixed)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - start)
