"""Where one training step's time goes, per strategy: data (the next padded batch), forward (with
the loss), backward, optimizer (AdamW step, schedule, zero_grad), timed apart on adaptflow's own
parts (the strategy's model, `epoch_loader`, accelerate, `make_optimizer`, `forward_loss`), fp32
(or `--precision bf16`, and `--adamw` for AdamW's kernel), the default data and params. Then
torch's profiler over a few steps of each: the operators that take the most CPU time (matmuls
against the rest). Results go to bench/results/step_profile.json (step_profile_<precision>_<adamw>.json
for other settings).

  .venv/bin/python bench/step_profile.py [--steps 24] [--strategies lora,full_finetune] [--precision bf16]

The first 4 steps of each strategy warm up (oneDNN picks its kernels) and are not counted, and
the first strategy runs a few steps unmeasured beforehand; medians over the rest. On a CPU every operator runs synchronously, so wall-clock phases are exact. The phases
add up to a little more than `bench/training.py`'s step (perf_counter calls and the split
`accumulate` context); compare shares, not absolute times.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Data, median, table, training_bench, write  # noqa: E402

WARMUP = 4
PHASES = ("data", "forward", "backward", "optimizer")


def setup(name: str, data: Data, settings, steps: int, precision: str = "no"):
    """The strategy's model, prepared with its optimizer and the length-grouped (or shuffled)
    loader, exactly as `tasks.training.loop.train` builds them; and whether batches are grouped."""
    from tasks.models.heads import Head
    from tasks.strategies import registry
    from tasks.training.loop import make_optimizer, make_accelerator, seed_everything
    from tasks.training.loader import epoch_loader
    from tasks.training.loop_settings import loop_config

    strategy = registry.get(name)
    params = settings.strategy_params[name]
    seed_everything(settings.train.seed)
    model = strategy.build(data.base_path, Head.for_task("classification", data.labels), params)
    bs = settings.train.batch_size
    cfg = loop_config(params, settings.train, epochs=1, eval_every=10**9, device="cpu", precision=precision)
    acc = make_accelerator(cfg)
    optimizer, scheduler, _ = make_optimizer(model, cfg, steps * bs, 1, name)
    wrapped, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
    subset = data.train.select(list(range(steps * bs)))
    loader = acc.prepare(epoch_loader(subset, data.pad_id, bs, bs, cfg.seed, cfg.group_by_length))
    wrapped.train()
    return (acc, wrapped, optimizer, scheduler, loader), cfg.group_by_length


def timed_steps(acc, wrapped, optimizer, scheduler, loader) -> dict[str, list[float]]:
    """Seconds per phase for every step after the warm-up."""
    from tasks.training.losses import forward_loss

    times: dict[str, list[float]] = {p: [] for p in PHASES}
    batches = iter(loader)
    step = 0
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            return times
        labels = batch.pop("labels")
        t1 = time.perf_counter()
        loss = forward_loss(wrapped, acc.unwrap_model(wrapped), batch, labels)
        t2 = time.perf_counter()
        acc.backward(loss)
        t3 = time.perf_counter()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        t4 = time.perf_counter()
        if step >= WARMUP:
            for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[phase].append(seconds)
        step += 1


def top_operators(acc, wrapped, optimizer, scheduler, loader, steps: int = 6, top: int = 6) -> list[dict]:
    """torch.profiler over `steps` steps: the operators with the most self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    from tasks.training.losses import forward_loss

    batches = iter(loader)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            batch = next(batches)
            labels = batch.pop("labels")
            acc.backward(forward_loss(wrapped, acc.unwrap_model(wrapped), batch, labels))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:top]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24, help=f"steps per strategy, {WARMUP} of them warm-up")
    parser.add_argument("--strategies", default="", help="comma-separated; default: every trainable one")
    parser.add_argument("--precision", default="no", choices=["no", "bf16"], help="no (fp32, default) or bf16 autocast")
    parser.add_argument("--adamw", default="auto", choices=["auto", "fused", "foreach"],
                        help="train.adamw (auto: fused in bf16, foreach in fp32)")
    args = parser.parse_args()

    settings, data, names = training_bench(args.strategies)
    settings = dataclasses.replace(settings, train=dataclasses.replace(settings.train, adamw=args.adamw))
    import torch

    print(f"{torch.get_num_threads()} threads, batch {settings.train.batch_size}, {args.steps} steps "
          f"({WARMUP} warm-up) per strategy, precision {args.precision}, adamw {args.adamw}, default data")
    rows, operators = [], {}
    # The process's first training steps ran 1.7-2x slower (145/247 ms forward/backward for
    # full_finetune measured first, 76-81/119-131 ms after another model): one unmeasured pass.
    timed_steps(*setup(names[0], data, settings, WARMUP + 4, args.precision)[0])
    for name in names:
        parts, grouped = setup(name, data, settings, args.steps, args.precision)
        times = timed_steps(*parts)
        med = {p: median(times[p]) for p in PHASES}
        step = sum(med.values())
        rows.append({"strategy": name, "grouped": grouped, "step_ms": step * 1000,
                     **{f"{p}_ms": med[p] * 1000 for p in PHASES},
                     **{f"{p}_share": med[p] / step for p in PHASES}})
        operators[name] = top_operators(*setup(name, data, settings, 6 + 1, args.precision)[0])
        print(table(rows[-1:]), flush=True)
        print("  top operators (self CPU): " + ", ".join(f"{o['op']} {o['share']:.0%}" for o in operators[name]),
              flush=True)
    print("\n" + table(rows))
    suffix = "" if (args.precision, args.adamw) == ("no", "auto") else f"_{args.precision}_{args.adamw}"
    out = write(f"step_profile{suffix}", {"steps": args.steps, "warmup": WARMUP, "precision": args.precision,
                                 "adamw": args.adamw, "rows": rows, "operators": operators})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
