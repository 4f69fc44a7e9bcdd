"""Packed generation batches (train.pack_generation) against padded ones, on the headlines profile's
own data and base (SmolLM2-135M-Instruct, BBC lead paragraph -> headline in its chat template):
examples/s and target+prompt tokens/s of adaptflow's loop, the share of processed positions that
are padding, and the mean training loss of both (the same micro-batches, so it should agree).
Interleaved repeats, medians.

  .venv/bin/python bench/packing.py [--strategy lora] [--steps 8] [--repeats 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, default_splits, interleaved, machine, median, table, write  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="lora")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    import torch
    from transformers.utils import logging as hf_logging

    from tasks.config import load_settings
    from tasks.models.base import load_base
    from tasks.models.encoding import collate, collate_packed, micro_batches
    from tasks.training.generation import prepare_generation_inputs
    from tasks.training.loop import seed_everything, train
    from tasks.training.loop_settings import loop_config

    hf_logging.set_verbosity_error()
    settings = load_settings(str(ROOT / "params.yaml"), profile="headlines", strategies=[args.strategy])
    frames = default_splits(settings)
    base = load_base(settings.model.base, settings.root)
    inputs = prepare_generation_inputs(settings, base, frames, args.strategy)
    cfg = settings.train
    n = args.steps * cfg.batch_size
    data = inputs.splits["train"].select(list(range(n)))
    tiny_val = inputs.splits["train"].select(list(range(cfg.batch_size)))
    real_tokens = sum(len(r) for r in data.input_ids)

    def positions(pack: bool) -> int:
        total = 0
        for idx in micro_batches(data, cfg.batch_size, cfg.effective_batch, cfg.seed, cfg.group_by_length):
            ids = (collate_packed(data, idx, inputs.pad_id) if pack else
                   collate([data.input_ids[i] for i in idx], inputs.pad_id))["input_ids"]
            total += ids.numel()
        return total

    losses: dict[str, list[float]] = {"padded": [], "packed": []}

    def run(pack: bool):
        def timed() -> float:
            seed_everything(cfg.seed)
            model = inputs.strategy.build(base.path, inputs.head, inputs.params)
            loop = dataclasses.replace(loop_config(inputs.params, cfg, inputs.hardware, epochs=1, eval_every=10**9),
                                       pack=pack)
            result = train(model, data, tiny_val, loop, inputs.pad_id, desc=f"{args.strategy} packed={pack}")
            losses["packed" if pack else "padded"].append(result.train_loss[-1][1] if result.train_loss else float("nan"))
            return result.train_seconds
        return timed

    print(f"{args.strategy} on {base.name}: {n} examples, {real_tokens:,} real tokens, batch {cfg.batch_size}, "
          f"{torch.get_num_threads()} threads, group_by_length={cfg.group_by_length}")
    times = interleaved({"padded": run(False), "packed": run(True)}, args.repeats)
    rows = []
    for name, pack in (("padded", False), ("packed", True)):
        seconds, processed = median(times[name]), positions(pack)
        rows.append({"batches": name, "median s": round(seconds, 2), "examples/s": round(n / seconds, 2),
                     "real tokens/s": round(real_tokens / seconds, 1), "positions": processed,
                     "padding %": round(100 * (1 - real_tokens / processed), 1),
                     "train loss": round(median(losses[name]), 4)})
    print(table(rows))
    speedup = median(times["padded"]) / median(times["packed"])
    print(f"packed / padded tokens/s: {speedup:.2f}x")
    write("packing", {"machine": machine(), "strategy": args.strategy, "steps": args.steps,
                      "repeats": args.repeats, "rows": rows, "speedup": speedup, "times": times})


if __name__ == "__main__":
    main()
