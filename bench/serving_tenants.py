"""Many tenants' LoRA versions on one MiniLM base: throughput with traffic spread evenly over N
adapters, one version per batch (before) against mixed-adapter batches (after), the memory N
versions take, and the cost model's predictions for both (tasks/evaluation/ownership.py).

  nice -n 10 .venv/bin/python bench/serving.py --tenants 1,8,32 [--seconds 8] [--rounds 3]

- throughput: the serving batcher and pool exactly as `adaptflow serve` builds them (in process,
  no HTTP), a closed loop of 32 outstanding one-text requests, request i for adapter i mod N;
  before and after alternate round by round (this machine is shared);
- the model's inputs are measured here as a run measures them (tasks/evaluation/cost.py): one
  adapter's batch-1 latency and batch-32 throughput, its weights and its saved bytes, and what a
  switch and a distinct version in a mixed pass cost (tasks/training/switching.py, on the
  first tenant's saved version, as a run measures its own);
- memory: resident memory a fresh process gains loading N versions (bench/serving.py's child:
  every weight read once, the C heap trimmed), the median of MEMORY_PROCESSES fresh processes.
Weights are seeded random (untrained). Writes bench/results/serving_tenants.json.
"""
from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

OUTSTANDING = 32   # = serving.max_batch: the queue the cost model's batch of 32 assumes
MEMORY_PROCESSES = 3   # fresh processes per N; their median is the figure


def closed_loop(batcher, targets: list, text_pool: list[str], seconds: float) -> float:
    """Requests answered per second with OUTSTANDING one-text requests always queued, request i
    for targets[i % len(targets)]."""
    slots = threading.Semaphore(OUTSTANDING)
    done, lock = [0], threading.Lock()

    def finished(_):
        with lock:
            done[0] += 1
        slots.release()

    i, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        slots.acquire()
        target = targets[i % len(targets)]
        batcher.submit(target.key, target, [text_pool[i % len(text_pool)]]).add_done_callback(finished)
        i += 1
    for _ in range(OUTSTANDING):   # drain: every request counted has been answered
        slots.acquire()
    return done[0] / (time.perf_counter() - start)


def serving_pair(folders: list[Path], mixed: bool):
    """(batcher, loaded versions) as Service builds them, with mixing on or off."""
    from tasks.serving.batching import Batcher
    from tasks.serving.pool import Loaded, Pool

    holder = {}
    batcher = Batcher(lambda target, texts: list(holder["pool"].predict(target, texts, OUTSTANDING)), 0.005,
                      OUTSTANDING, None, mix_key=lambda t: (t.mix or None) if isinstance(t, Loaded) else None,
                      run_mixed=lambda items: [list(p) for p in holder["pool"].predict_mixed(items, OUTSTANDING)])
    pool = holder["pool"] = Pool(merged=[], on_inference_thread=lambda fn: fn(), mixed_batches=mixed)
    loaded = [pool.load("bench", str(i + 1), f) for i, f in enumerate(folders)]
    batcher.start()
    return batcher, loaded


def reference_version(folder: Path):
    """One adapter loaded alone, as a run's evaluation holds it: (pool, version, static figures)."""
    from tasks.evaluation.cost import count_parameters
    from tasks.serving.pool import Pool

    pool = Pool(merged=[], on_inference_thread=lambda fn: fn())
    one = pool.load("ref", "1", folder)
    _, total = count_parameters(one.group.model)
    return pool, one, {"model_params": float(total),
                       "artifact_bytes": float(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()))}


def switching_figures(one, folder: Path, sample: list[str]) -> dict:
    """switch_ms, switch_ms_per_version, mixed_ms_per_version as a run logs them."""
    import numpy as np

    from tasks.models.encoding import encode
    from tasks.training.switching import switching_metrics

    data = encode(one.tokenizer, sample[:64], np.zeros(64, dtype=np.int64), one.manifest.max_length)
    return switching_metrics(folder, one.base, data, one.tokenizer.pad_token_id, generates=False)


def speed_figures(pool, one, sample: list[str], singles: int = 30, batches: int = 6) -> dict:
    """What a run logs for the cost model, measured the same way (tasks/evaluation/cost.py:
    measure_speed): p50/p95 of one-text calls, examples/s over calls of 32."""
    import numpy as np

    pool.predict(one, sample[:1], 32)
    times = []
    for i in range(singles):
        start = time.perf_counter()
        pool.predict(one, [sample[i % len(sample)]], 32)
        times.append(1000 * (time.perf_counter() - start))
    start = time.perf_counter()
    for b in range(batches):
        pool.predict(one, sample[32 * b:32 * (b + 1)], 32)
    return {"latency_ms_p50": statistics.median(times), "latency_ms_p95": float(np.percentile(times, 95)),
            "throughput_examples_per_s": 32 * batches / (time.perf_counter() - start)}


def predicted(figures: dict, n: int) -> dict:
    """The cost model's throughput for N tenants (one instance, no latency cap), one version per
    batch and mixed, and its memory (one base + N adapters, the process overhead left out)."""
    from tasks.config import CostSettings
    from tasks.evaluation.ownership import Measured, capacity, memory_mb

    s = CostSettings(latency_p95_ms=1e9, serve_batch=OUTSTANDING, batch_wait_ms=5.0)
    out = {}
    for mixes in (False, True):
        m = Measured.from_metrics("lora", figures | {"tenant_shares_base": 1.0, "tenant_mixes": float(mixes)})
        out["mixed_predicted_rps" if mixes else "per_adapter_predicted_rps"] = capacity(m, n, s)[1]
        out["memory_predicted_mb"] = memory_mb(m, n, s) - s.process_overhead_mb
    return out


def measure(work: Path, sizes: list[int], seconds: float, rounds: int, memory_of) -> dict:
    """memory_of(folders) -> a fresh process's RSS gain loading them (bench/serving.py). Each
    round measures the model's inputs (one adapter alone) and then both modes, so a change of
    load on this shared machine hits prediction and measurement alike."""
    import torch

    from bench.serving import save_version, texts

    torch.set_num_threads(2)
    folders = [save_version(work / f"tenant-{i}", "lora", i) for i in range(max(sizes))]
    sample = texts(256)
    ref_pool, ref, static = reference_version(folders[0])
    rows = []
    for n in sizes:
        pairs = {mode: serving_pair(folders[:n], mode == "mixed") for mode in ("per_adapter", "mixed")}
        for batcher, loaded in pairs.values():
            closed_loop(batcher, loaded, sample, 1.0)   # warm-up
        figures, rps = [], {mode: [] for mode in pairs}
        for _ in range(rounds):
            figures.append(speed_figures(ref_pool, ref, sample) | switching_figures(ref, folders[0], sample))
            for mode, (batcher, loaded) in pairs.items():
                rps[mode].append(closed_loop(batcher, loaded, sample, seconds))
        for batcher, _ in pairs.values():
            batcher.stop()
        inputs = static | {k: statistics.median(f[k] for f in figures) for k in figures[0]}
        row = {"n": n, "model_inputs": inputs, **predicted(inputs, n)}
        for mode, values in rps.items():
            row |= {f"{mode}_rps": statistics.median(values), f"{mode}_rps_rounds": values}
        rows.append(row)
        print(f"  N={n:>3}: " + "; ".join(f"{mode} {row[f'{mode}_rps']:6.1f} req/s" for mode in rps), flush=True)
    for row in rows:
        readings = [memory_of(folders[:row["n"]]) for _ in range(MEMORY_PROCESSES)]
        row["memory_mb"], row["memory_mb_processes"] = statistics.median(readings), readings
        row["memory_error"] = row["memory_predicted_mb"] / row["memory_mb"] - 1
        for mode in ("per_adapter", "mixed"):
            row[f"{mode}_share_of_one_adapter"] = row[f"{mode}_rps"] / rows[0]["mixed_rps"]
            row[f"{mode}_rps_error"] = row[f"{mode}_predicted_rps"] / row[f"{mode}_rps"] - 1
    return {"rows": rows, "seconds": seconds, "rounds": rounds, "outstanding": OUTSTANDING}


def report(result: dict) -> None:
    for r in result["rows"]:
        f = r["model_inputs"]
        print(f"N={r['n']}: one adapter alone, as a run measures it: p50 {f['latency_ms_p50']:.1f} ms, p95 "
              f"{f['latency_ms_p95']:.1f} ms (batch 1), {f['throughput_examples_per_s']:.0f} ex/s (batch 32), "
              f"{f['model_params']:,.0f} weights, {f['artifact_bytes'] / 1e6:.2f} MB saved; switch "
              f"{f['switch_ms']:.2f} ms + {f['switch_ms_per_version']:.3f} ms per further version held, "
              f"{f['mixed_ms_per_version']:.2f} ms per further distinct version in a mixed pass; memory "
              f"readings {', '.join(f'{x:.1f}' for x in r['memory_mb_processes'])} MB")
    print(f"{'N':>4}{'per-adapter':>13}{'(model)':>9}{'share':>7}{'mixed':>9}{'(model)':>9}{'share':>7}"
          f"{'memory MB':>11}{'(model)':>9}")
    for r in result["rows"]:
        print(f"{r['n']:>4}{r['per_adapter_rps']:>13.1f}{r['per_adapter_predicted_rps']:>9.1f}"
              f"{r['per_adapter_share_of_one_adapter']:>7.0%}{r['mixed_rps']:>9.1f}{r['mixed_predicted_rps']:>9.1f}"
              f"{r['mixed_share_of_one_adapter']:>7.0%}{r['memory_mb']:>11.1f}{r['memory_predicted_mb']:>9.1f}")
    print("model error (predicted / measured - 1): " + "; ".join(
        f"N={r['n']}: per-adapter {r['per_adapter_rps_error']:+.0%}, mixed {r['mixed_rps_error']:+.0%}, "
        f"memory {r['memory_error']:+.0%}" for r in result["rows"]))
