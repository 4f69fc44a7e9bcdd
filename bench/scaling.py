"""Scaling: training time and peak memory as the training set grows, and as the number of
strategies trained one after the other grows; writes bench/results/scaling.png.

  .venv/bin/python bench/scaling.py [--sizes 500,2000,8000] [--counts 1,2,4] [--strategy lora]

Each point runs in a fresh Python process of its own, so its peak resident memory (ru_maxrss)
is its own: `--strategy` trained for one epoch on n default training examples with adaptflow's
loop; then the first k of lora, ia3, prompt_tuning, bottleneck_adapter, each built and trained
for one epoch on --count-examples examples in one process (as `ops.isolation: thread` would).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, table, write  # noqa: E402

SEQUENCE = ["lora", "ia3", "prompt_tuning", "bottleneck_adapter"]


def child(names: list[str], n: int) -> dict:
    """In this process: build and train each strategy on n examples; seconds and peak RSS."""
    from tasks.models.heads import Head
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    import torch
    from transformers.utils import logging as hf_logging

    from bench.common import default_data
    from tasks.config import load_settings
    from tasks.strategies import registry
    from tasks.training.loop import seed_everything, train
    from tasks.training.loop_settings import loop_config

    hf_logging.set_verbosity_error()
    s = load_settings(str(Path(__file__).resolve().parents[1] / "params.yaml"), strategies=names)
    torch.set_num_threads(s.train.threads)
    data = default_data()
    subset, val = data.train.select(list(range(n))), data.train.select(list(range(n, n + 16)))
    start = time.perf_counter()
    train_seconds = 0.0
    for name in names:
        strategy = registry.get(name)
        params = s.strategy_params[name]
        seed_everything(s.train.seed)
        model = strategy.build(data.base_path, Head.for_task('classification', data.labels), params)
        cfg = loop_config(params, s.train, epochs=1, eval_every=10**9)
        train_seconds += train(model, subset, val, cfg, data.pad_id, desc=f"{name} n={n}").train_seconds
        del model
    return {"seconds": time.perf_counter() - start, "train_seconds": train_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def point(names: list[str], n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", ",".join(names), "--n", str(n)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot(sizes: list[dict], counts: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, rows, key, label in ((axes[0], sizes, "n", "training examples (one epoch)"),
                                 (axes[1], counts, "k", f"strategies trained in one process ({counts[0]['n']} examples each)")):
        xs = [r[key] for r in rows]
        ax.plot(xs, [r["seconds"] for r in rows], "o-", color="tab:blue")
        ax.set_xlabel(label)
        ax.set_ylabel("seconds", color="tab:blue")
        twin = ax.twinx()
        twin.plot(xs, [r["peak_rss_mb"] for r in rows], "s--", color="tab:red")
        twin.set_ylabel("peak RSS (MB)", color="tab:red")
        ax.set_xticks(xs)
    axes[0].set_title(f"{sizes[0]['strategy']}: time and memory vs training-set size")
    axes[1].set_title("time and memory vs number of strategies")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500,2000,8000")
    parser.add_argument("--counts", default="1,2,4")
    parser.add_argument("--strategy", default="lora")
    parser.add_argument("--count-examples", type=int, default=500)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child.split(","), args.n)))
        return
    sizes = []
    for n in [int(x) for x in args.sizes.split(",")]:
        sizes.append({"strategy": args.strategy, "n": n, **point([args.strategy], n)})
        print(table(sizes[-1:]), flush=True)
    counts = []
    for k in [int(x) for x in args.counts.split(",")]:
        counts.append({"k": k, "n": args.count_examples, "strategies": ",".join(SEQUENCE[:k]),
                       **point(SEQUENCE[:k], args.count_examples)})
        print(table(counts[-1:]), flush=True)
    print("\n" + table(sizes) + "\n\n" + table(counts))
    png = RESULTS / "scaling.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(sizes, counts, png)
    out = write("scaling", {"sizes": sizes, "counts": counts, "plot": str(png.relative_to(RESULTS.parents[1]))})
    print(f"wrote {out} and {png}")


if __name__ == "__main__":
    main()
