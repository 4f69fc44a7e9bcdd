"""Two strategies one after another with every core, or side by side with a core each?

  .venv/bin/python bench/lanes.py [--steps 24] [--repeats 2] [--pairs full_finetune:prompt_tuning,lora:zero_shot]

Per pair (A, B) and repeat, interleaved: "serial" trains A then B in one process with
train.threads torch threads; "lanes" trains A and B at once, each in its own process with
threads // 2 threads. Both train with adaptflow's loop on the same first steps x batch_size
default training examples (building and data loading are not timed; each process reports its own
training seconds and the wall clock runs from both starting to both ending). lanes_speedup > 1:
`ops.parallel_strategies: 2` would finish the pair sooner on this machine.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import median, table, write  # noqa: E402


def _train(name: str, steps: int, threads: int, ready, go, out) -> None:
    """One training in this process: load everything, say ready, wait for go, train, report seconds."""
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    import torch
    from transformers.utils import logging as hf_logging

    from bench.common import default_data
    from bench.training import adaptflow_run
    from tasks.config import load_settings

    hf_logging.set_verbosity_error()
    torch.set_num_threads(threads)
    settings = load_settings(str(Path(__file__).resolve().parents[1] / "params.yaml"), strategies=[name])
    data = default_data()
    params = settings.strategy_params[name]
    ready.set()
    go.wait()
    seconds, _ = adaptflow_run(name, data, params, settings, steps)
    out.put((name, seconds))


def timed(names: list[str], steps: int, threads: int, together: bool) -> float:
    """Wall seconds of training `names`: all at once (each its own process) or one after another."""
    ctx = mp.get_context("spawn")
    if not together:
        return sum(timed([n], steps, threads, True) for n in names)
    out, go = ctx.Queue(), ctx.Event()
    procs, readies = [], []
    for name in names:
        ready = ctx.Event()
        procs.append(ctx.Process(target=_train, args=(name, steps, threads, ready, go, out)))
        readies.append(ready)
        procs[-1].start()
    for ready, proc in zip(readies, procs):
        while not ready.wait(1):
            if not proc.is_alive():   # died loading: its traceback is above; do not wait forever
                raise SystemExit(f"a training process exited with code {proc.exitcode} before it was ready")
    start = time.perf_counter()
    go.set()
    results = []
    while len(results) < len(names):
        try:
            results.append(out.get(timeout=5))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                raise SystemExit("a training process failed; its traceback is above") from None
    wall = time.perf_counter() - start
    for p in procs:
        p.join()
    # The wall clock includes each process's report; its own training seconds bound it below.
    return max(wall, max(s for _, s in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pairs", default="full_finetune:prompt_tuning,lora:full_finetune")
    parser.add_argument("--threads", type=int, default=2, help="cores to share (train.threads)")
    args = parser.parse_args()
    rows = []
    for pair in args.pairs.split(","):
        names = pair.split(":")
        times: dict[str, list[float]] = {"serial": [], "lanes": []}
        for _ in range(args.repeats):
            times["serial"].append(timed(names, args.steps, args.threads, together=False))
            times["lanes"].append(timed(names, args.steps, max(1, args.threads // len(names)), together=True))
        serial, lanes = median(times["serial"]), median(times["lanes"])
        rows.append({"pair": pair, "serial_s": serial, "lanes_s": lanes, "lanes_speedup": serial / lanes,
                     "seconds": times})
        print(table(rows[-1:], [c for c in rows[-1] if c != "seconds"]), flush=True)
    print("\n" + table(rows, [c for c in rows[0] if c != "seconds"]))
    print(f"wrote {write('lanes', {'steps': args.steps, 'repeats': args.repeats, 'threads': args.threads, 'rows': rows})}")


if __name__ == "__main__":
    main()
