"""Few-shot scoring: how fast an example is scored, and against the uncached reference.

  .venv/bin/python bench/few_shot_cache.py [--examples 24] [--repeats 3] [--batch-examples 96]

Real SmolLM2-135M-Instruct, real Rotten Tomatoes test texts (the default data, bench/common.py),
k=4 demonstrations. Prints, on the same examples:
- seconds per example at batch 1 (p50; a user's request, the demonstrations' cache warm) and at
  batch 32 (the run's scoring; median over repeats);
- the reused-cache `score` against `score_uncached` (whole prompt per example and label): medians,
  speed-up, the largest score difference.
Writes JSON to bench/results/few_shot_cache.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import statistics
import time
from dataclasses import replace

import torch

from tasks.models.heads import Head
from tasks.env import apply_offline_defaults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-examples", type=int, default=96, help="examples scored at batch 32")
    args = parser.parse_args()
    apply_offline_defaults()
    torch.set_num_threads(2)

    from tasks.models.base import resolve_base_path
    from tasks.models.loading import load_tokenizer
    from tasks.models.packaged import SMOLLM2
    from tasks.strategies import registry
    from tasks.strategies.few_shot import draw_demonstrations

    labels = ["negative", "positive"]
    from bench.common import ROOT, default_splits, write

    from tasks.config import load_settings

    frames = default_splits(load_settings(ROOT / "params.yaml"))
    train, test = frames["train"], frames["test"].head(max(args.examples, args.batch_examples))
    strategy = registry.get("few_shot")
    params = strategy.parse_params({})
    params = replace(params, demonstrations=draw_demonstrations(train, labels, params.k, params.demo_seed))
    base = resolve_base_path(SMOLLM2)
    model = strategy.build(base, Head.for_task('classification', labels), params)
    encoded = load_tokenizer(base)(test["text"].tolist(), truncation=True, max_length=64)["input_ids"]
    all_rows = [model._own_tokens(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0]
                for ids in encoded]
    rows = all_rows[: args.examples]

    model.score(rows[:1])   # the demonstrations' cache, built once per model as in a run
    single = []
    for row in rows:
        start = time.perf_counter()
        model.score([row])
        single.append(time.perf_counter() - start)
    batched = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for b in range(0, args.batch_examples, 32):
            model.score(all_rows[b:b + 32])
        batched.append((time.perf_counter() - start) / args.batch_examples)

    def timed(fn):
        times, out = [], None
        for _ in range(args.repeats):
            model._cache = None   # the prefix is encoded inside each timed call
            start = time.perf_counter()
            out = fn(rows)
            times.append(time.perf_counter() - start)
        return statistics.median(times), out

    cached_s, cached = timed(model.score)
    uncached_s, uncached = timed(model.score_uncached)
    result = {
        "batch1_s_per_example_p50": statistics.median(single),
        "batch32_s_per_example": statistics.median(batched), "batch32_examples": args.batch_examples,
        "examples": len(rows), "prefix_tokens": len(model.prefix),
        "mean_example_tokens": sum(map(len, rows)) / len(rows), "repeats": args.repeats,
        "cached_median_s": cached_s, "uncached_median_s": uncached_s,
        "speedup": uncached_s / cached_s,
        "max_abs_score_diff": float((cached - uncached).abs().max()),
        "same_predictions": bool((cached.argmax(1) == uncached.argmax(1)).all()),
    }
    print(write("few_shot_cache", result).read_text())


if __name__ == "__main__":
    main()
