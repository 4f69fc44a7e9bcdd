"""Where adaptflow's training can be faster, each measured before and after, side by side:

  .venv/bin/python bench/optimisations.py [--steps 40] [--repeats 3] [--strategies full_finetune,lora]

- padding: every batch padded to model.max_length (fixed) / to its longest row (dynamic, what
  the loop does) / dynamic with length-grouped batches (tasks.models.encoding.length_grouped_order);
- threads: torch intra-op threads 1 / 2 (train.threads);
- bf16: fp32 / torch.autocast(cpu, bfloat16) on the forward pass (the CPU reports avx512_bf16);
- tokenizing: what each strategy's process spends tokenizing the three splits, i.e. what
  tokenizing once and sharing the ids across strategies would save per strategy.

Each variant runs the same training step (forward, cross-entropy, backward, AdamW) on the same
first steps x batch_size training examples of the default data, on a freshly built model, in
interleaved rounds; medians of examples/s. The loss after the steps is printed beside each, so a
variant that trains differently shows; whether a kept change moves accuracy is checked with
`--check-accuracy` (a full lora training with and without, McNemar on the test split).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Data, default_data, default_splits, interleaved, median, table, write  # noqa: E402


def step_loop(model, data: Data, steps: int, batch_size: int, seed: int, padding: str, bf16: bool) -> tuple[float, float]:
    """(seconds, mean loss of the last 10 steps) of `steps` training steps."""
    import numpy as np
    import torch
    from torch import nn

    from tasks.models.encoding import collate, length_grouped_order

    subset = data.train.select(np.arange(steps * batch_size))
    lengths = [len(r) for r in subset.input_ids]
    order = (length_grouped_order(lengths, batch_size, seed) if padding == "grouped"
             else np.random.default_rng(seed).permutation(len(subset)))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.01)
    model.train()
    losses = []
    start = time.perf_counter()
    for b in range(steps):
        idx = order[b * batch_size:(b + 1) * batch_size]
        rows = [subset.input_ids[i] for i in idx]
        if padding == "fixed":
            rows = [r + [data.pad_id] * (data.max_length - len(r)) for r in rows]
        inputs = collate(rows, data.pad_id)
        if padding == "fixed":   # the padding is attended to nowhere: same mask as dynamic
            inputs["attention_mask"] = (torch.arange(data.max_length)[None, :] <
                                        torch.tensor([len(subset.input_ids[i]) for i in idx])[:, None]).long()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(**inputs).logits
        loss = nn.functional.cross_entropy(logits.float(), torch.from_numpy(subset.labels[idx]))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return time.perf_counter() - start, float(np.mean(losses[-10:]))


def variants() -> dict[str, dict]:
    return {"fixed padding": {"padding": "fixed"}, "dynamic padding": {"padding": "dynamic"},
            "length-grouped": {"padding": "grouped"}, "1 thread": {"padding": "dynamic", "threads": 1},
            "bf16 autocast": {"padding": "dynamic", "bf16": True}}


def measure(name: str, data: Data, params, steps: int, batch_size: int, seed: int, repeats: int,
            threads: int) -> list[dict]:
    import torch

    from tasks.models.heads import Head
    from tasks.strategies import registry
    from tasks.training.loop import seed_everything

    strategy, losses = registry.get(name), {}

    def run(label: str, v: dict):
        def go():
            seed_everything(seed)
            model = strategy.build(data.base_path, Head.for_task('classification', data.labels), params)
            torch.set_num_threads(v.get("threads", threads))
            try:
                seconds, losses[label] = step_loop(model, data, steps, batch_size, seed, v["padding"],
                                                   v.get("bf16", False))
            finally:
                torch.set_num_threads(threads)
            return seconds
        return go

    run("warm-up", {"padding": "dynamic"})()
    times = interleaved({label: run(label, v) for label, v in variants().items()}, repeats)
    base = median(times["dynamic padding"])
    return [{"strategy": name, "variant": label, "ex_per_s": steps * batch_size / median(t),
             "vs_dynamic": base / median(t), "loss_last10": losses[label], "seconds": t}
            for label, t in times.items()]


def tokenizing_seconds(repeats: int) -> dict:
    """What encode_splits (run in every strategy's process) costs on the default data."""
    import pandas as pd

    from tasks.config import load_settings
    from tasks.models.base import resolve_base_path
    from tasks.models.loading import load_tokenizer
    from tasks.training.run import encode_splits

    s = load_settings(str(Path(__file__).resolve().parents[1] / "params.yaml"))
    frames = default_splits(s)
    path = resolve_base_path(s.model.base, s.root)
    times, load = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        tok = load_tokenizer(path)
        t1 = time.perf_counter()
        encode_splits(tok, frames, list(s.validation.labels), s.model.max_length, s.train.max_train_examples, 0,
                      s.train.seed)
        times.append(time.perf_counter() - t1)
        load.append(t1 - t0)
    return {"encode_splits_s": median(times), "load_tokenizer_s": median(load),
            "rows": sum(len(f) for f in frames.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strategies", default="full_finetune,lora")
    args = parser.parse_args()

    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    import torch
    from transformers.utils import logging as hf_logging

    from tasks.config import load_settings

    hf_logging.set_verbosity_error()
    names = [s for s in args.strategies.split(",") if s]
    settings = load_settings(str(Path(__file__).resolve().parents[1] / "params.yaml"), strategies=names)
    threads = settings.train.threads
    torch.set_num_threads(threads)
    data = default_data()
    rows = []
    for name in names:
        params = settings.strategy_params[name]
        rows += measure(name, data, params, args.steps, settings.train.batch_size, settings.train.seed,
                        args.repeats, threads)
        print(table(rows[-len(variants()):], ["strategy", "variant", "ex_per_s", "vs_dynamic", "loss_last10"]),
              flush=True)
    tok = tokenizing_seconds(args.repeats)
    print(f"\ntokenizing the three splits ({tok['rows']:,} rows) in each strategy's process: "
          f"{tok['encode_splits_s']:.2f} s (+ {tok['load_tokenizer_s']:.2f} s loading the tokenizer)")
    out = write("optimisations", {"steps": args.steps, "batch_size": settings.train.batch_size,
                                  "repeats": args.repeats, "rows": rows, "tokenizing": tok})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
