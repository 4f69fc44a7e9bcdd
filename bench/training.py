"""Training throughput per strategy: adaptflow's training loop against a plain Hugging Face
`Trainer` + PEFT / `adapters` script (bench/hf_baseline.py) with the same hyperparameters, and
both against this CPU's measured matmul peak (model FLOP utilisation, MFU).

  .venv/bin/python bench/training.py [--steps 30] [--repeats 3] [--strategies lora,ia3]

Per strategy and repeat, in turn: adaptflow's `tasks.training.train` and `trainer.train()`, each
on the same first steps x batch_size training examples of the default data, one epoch, no
evaluation, on a freshly built model (building is not timed). Medians over the repeats.
adaptflow trains as params say (length-grouped batches, except the strategies that opt out);
the Trainer script runs twice: with Trainer's defaults (shuffled batches, `group_by_length=False`),
as a first script would, and tuned (`group_by_length=True` wherever adaptflow groups, the same
thread count, nothing evaluated or logged inside the timed steps), as a user who cares about
speed would set it. Both ratios are printed (speedup, speedup_vs_tuned).

FLOPs per real (non-padding) token, N = the base's matmul parameters (all but the embedding
tables), N_t = the trainable ones; attention-score FLOPs (~2 % at 40 tokens) are left out:
  full_finetune      6 N                 forward 2N, backward 4N
  partial_finetune   2 N + 4 N_t         no backward below the lowest trained layer
  every adapter      4 N + 2 N_t         the gradient flows back through the frozen base (2N),
                                         weight gradients only for the trained tensors
MFU = achieved training FLOP/s / the fp32 matmul FLOP/s measured in the same run (training runs
in fp32); the bf16 peak is printed beside it. With --bf16, adaptflow's loop is also timed with
train.mixed_precision: bf16 (accelerate's autocast, and fused AdamW as train.adamw: auto gives it),
and the tuned Trainer with bf16=True: bf16_vs_fp32 > 1 means bf16 is faster here than the fp32
loop, bf16_vs_tuned_bf16 compares the two in the same precision.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Data, interleaved, median, table, training_bench, write  # noqa: E402


def matmul_gflops(dtype: str, n: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s of an n x n matmul in `dtype` with the current torch threads."""
    import time

    import torch

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    a @ b                                   # warm-up (oneDNN picks its kernels)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / median(times) / 1e9


def matmul_params(base_path: Path) -> int:
    from tasks.models.loading import load_classifier

    model = load_classifier(base_path, ["a", "b"])
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)


def flops_per_token(name: str, n: int, n_trainable: int) -> float:
    if name == "full_finetune":
        return 6 * n
    if name == "partial_finetune":
        return 2 * n + 4 * n_trainable
    return 4 * n + 2 * n_trainable


def adaptflow_run(name: str, data: Data, params, settings, steps: int, precision: str = "no"):
    """Build (not timed) and train with adaptflow's loop, in fp32 ("no") or bf16 autocast;
    returns (seconds, trainable params)."""
    from tasks.evaluation.cost import count_parameters
    from tasks.models.heads import Head
    from tasks.strategies import registry
    from tasks.training.loop import seed_everything, train
    from tasks.training.loop_settings import loop_config

    batch_size, seed = settings.train.batch_size, settings.train.seed
    strategy = registry.get(name)
    seed_everything(seed)
    model = strategy.build(data.base_path, Head.for_task('classification', data.labels), params)
    trainable, _ = count_parameters(model)
    subset = data.train.select(list(range(steps * batch_size)))
    tiny_val = data.train.select(list(range(batch_size)))   # train() ends with one validation check
    cfg = loop_config(params, settings.train, epochs=1, eval_every=10**9, device="cpu",   # the strategy's own grouping
                      precision=precision)
    return train(model, subset, tiny_val, cfg, data.pad_id, desc=name).train_seconds, trainable


def hf_run(name: str, data: Data, tokenizer, raw_params: dict, lr: float, steps: int, batch_size: int,
           seed: int, group_by_length: bool = False, bf16: bool = False) -> float:
    from transformers import set_seed

    from bench import hf_baseline

    set_seed(seed)
    model = hf_baseline.build(name, data.base_path, data.labels, raw_params)
    n = steps * batch_size
    return hf_baseline.train_seconds(model, data.texts[:n], data.train.labels[:n].tolist(),
                                     tokenizer, data.max_length, batch_size,
                                     lr, steps, seed, name in hf_baseline.ADAPTERS_LIB, group_by_length, bf16)


def bf16_columns(times: dict[str, list[float]], fp32_s: float, flop: float, peak: dict[str, float],
                 examples: int) -> dict[str, float]:
    """The bf16 loop: examples/s, its speed over the fp32 loop and over the tuned Trainer in bf16,
    and its FLOP/s against both matmul peaks."""
    ours, tuned = median(times["adaptflow_bf16"]), median(times["trainer_tuned_bf16"])
    return {"bf16_ex_per_s": examples / ours, "bf16_vs_fp32": fp32_s / ours, "bf16_vs_tuned_bf16": tuned / ours,
            "bf16_mfu_fp32": flop / ours / 1e9 / peak["fp32"], "bf16_mfu_bf16": flop / ours / 1e9 / peak["bf16"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="training steps per measurement (default 30)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strategies", default="", help="comma-separated; default: every trainable one")
    parser.add_argument("--bf16", action="store_true", help="also time adaptflow's loop in bf16 autocast "
                                                           "(train.mixed_precision: bf16), interleaved with the rest")
    args = parser.parse_args()

    settings, data, names = training_bench(args.strategies)
    import torch

    from tasks.models.loading import load_tokenizer

    tokenizer = load_tokenizer(data.base_path)   # the Trainer script's, loaded once for every run
    bs, seed = settings.train.batch_size, settings.train.seed
    peak = {"fp32": matmul_gflops("fp32"), "bf16": matmul_gflops("bf16")}
    n_matmul = matmul_params(data.base_path)
    tokens = sum(len(ids) for ids in data.train.input_ids[: args.steps * bs])
    print(f"matmul peak, {torch.get_num_threads()} threads: fp32 {peak['fp32']:.1f} GFLOP/s, "
          f"bf16 {peak['bf16']:.1f} GFLOP/s; base matmul params N = {n_matmul:,}; "
          f"{args.steps} steps x {bs} = {args.steps * bs} examples, {tokens:,} real tokens")

    rows = []
    for name in names:
        params = settings.strategy_params[name]
        raw = dataclasses.asdict(params)   # hf_baseline's input: the values adaptflow trains with
        trainable = {}

        def ours(precision: str = "no"):
            seconds, trainable["n"] = adaptflow_run(name, data, params, settings, args.steps, precision)
            return seconds

        grouped = settings.train.group_by_length if params.group_by_length is None else params.group_by_length
        hf_run(name, data, tokenizer, raw, params.learning_rate, 2, bs, seed)   # warm-up: first-call costs
        # "trainer": Trainer's defaults; "trainer_tuned": with length grouping wherever adaptflow
        # groups (the same threads; neither evaluates inside the timed steps).
        runs = {"adaptflow": ours, "trainer": lambda: hf_run(
            name, data, tokenizer, raw, params.learning_rate, args.steps, bs, seed),
            "trainer_tuned": lambda: hf_run(name, data, tokenizer, raw, params.learning_rate, args.steps, bs, seed,
                                            group_by_length=grouped)}
        if args.bf16:   # both in bf16 autocast with fused AdamW (train.adamw: auto; Trainer's default)
            runs["adaptflow_bf16"] = lambda: ours("bf16")
            runs["trainer_tuned_bf16"] = lambda: hf_run(name, data, tokenizer, raw, params.learning_rate, args.steps,
                                                        bs, seed, group_by_length=grouped, bf16=True)
        times = interleaved(runs, args.repeats)
        ours_s, hf_s, tuned_s = (median(times[k]) for k in ("adaptflow", "trainer", "trainer_tuned"))
        flops = flops_per_token(name, n_matmul, trainable["n"]) * tokens / ours_s
        rows.append({"strategy": name, "grouped": grouped, "adaptflow_ex_per_s": args.steps * bs / ours_s,
                     "trainer_ex_per_s": args.steps * bs / hf_s, "speedup": hf_s / ours_s,
                     "tuned_trainer_ex_per_s": args.steps * bs / tuned_s, "speedup_vs_tuned": tuned_s / ours_s,
                     "tokens_per_s": tokens / ours_s, "gflop_per_s": flops / 1e9,
                     "mfu_fp32": flops / 1e9 / peak["fp32"], "mfu_bf16": flops / 1e9 / peak["bf16"],
                     "trainable_params": trainable["n"], "seconds": times}
                    | (bf16_columns(times, ours_s, flops * ours_s, peak, args.steps * bs) if args.bf16 else {}))
        print(table(rows[-1:], [c for c in rows[-1] if c != "seconds"]), flush=True)
    print("\n" + table(rows, [c for c in rows[0] if c != "seconds"]))
    out = write("training", {"steps": args.steps, "batch_size": bs, "real_tokens": tokens, "repeats": args.repeats,
                             "matmul_gflops": peak, "base_matmul_params": n_matmul, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
