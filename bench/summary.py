"""One table of the latest figures of `make bench` (bench/results/*.json), for docs/performance.md and
closing notes.

  .venv/bin/python bench/summary.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, table  # noqa: E402


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def main() -> None:
    training, opts, scaling, overhead, steps, evals, check = (
        load(n) for n in ("training", "optimisations", "scaling", "overhead", "step_profile", "eval_precision",
                          "precision_check"))
    source = training or opts or scaling or overhead
    if source is None:
        sys.exit("no results yet: run `make bench`")
    m = source["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, torch {m['torch']} "
          f"({m['torch_threads']} threads), avx512_bf16={m['avx512_bf16']}; "
          f"commit {m.get('commit', 'not recorded')}\n")
    if training:
        peak = training["matmul_gflops"]
        print(f"matmul peak: fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s")
        print(f"training throughput ({training['steps']} steps x {training['batch_size']}, "
              f"median of {training['repeats']}):")
        print(table(training["rows"], ["strategy", "adaptflow_ex_per_s", "trainer_ex_per_s", "speedup",
                                       "gflop_per_s", "mfu_fp32", "mfu_bf16"]) + "\n")
    if steps:
        print(f"one training step ({steps['steps'] - steps['warmup']} measured steps, medians):")
        print(table(steps["rows"], ["strategy", "step_ms", "data_share", "forward_share", "backward_share",
                                    "optimizer_share"]) + "\n")
    if opts:
        print(f"optimisations ({opts['steps']} steps, median of {opts['repeats']}; vs_dynamic > 1 is faster):")
        print(table(opts["rows"], ["strategy", "variant", "ex_per_s", "vs_dynamic", "loss_last10"]))
        tok = opts["tokenizing"]
        print(f"tokenizing the splits, per strategy process: {tok['encode_splits_s']:.2f} s\n")
    if scaling:
        print("scaling:")
        print(table(scaling["sizes"], ["strategy", "n", "seconds", "train_seconds", "peak_rss_mb"]))
        print(table(scaling["counts"], ["k", "strategies", "seconds", "train_seconds", "peak_rss_mb"]) + "\n")
    if evals:
        print("evaluation passes, fp32 against bf16 autocast (probe rows: test accuracies, McNemar p; loss row: "
              "perplexities, the losses' relative difference):")
        print(table(evals["rows"]) + "\n")
    if check:
        print(f"the start-up bf16 measurement: {check['quiet_median']:.2f}x fp32 quiet, "
              f"{check['beside_server_median']:.2f}x beside Prefect's server start (medians of {len(check['pairs'])})\n")
    if overhead:
        pairs = overhead.get("pairs") or [overhead]   # results written before --repeats: one pair, at the top
        print(f"end to end ({overhead['profile']} profile): overhead {100 * overhead['overhead']:+.1f} % "
              f"(median of {len(pairs)} pair(s) of `adaptflow run` and the bare script)")
        for pair in pairs:
            b = pair["breakdown"]
            rows = [{"stage": k, "seconds": v} for k, v in b["stages"].items()]
            rows.append({"stage": "flow outside its tasks", "seconds": b["outside_tasks"]})
            print(f"`adaptflow run` {pair['flow_seconds']:.0f} s, bare script {pair['bare_seconds']:.0f} s, "
                  f"overhead {100 * (pair['flow_seconds'] / pair['bare_seconds'] - 1):+.1f} %")
            print(table(rows))

if __name__ == "__main__":
    main()
