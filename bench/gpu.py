"""What a person with a CUDA machine runs (`make bench-gpu`, under 8 minutes on one GPU): lora and
full_finetune on the default profile (MiniLM) and the causal profile (SmolLM2-135M), each for a
fixed number of optimizer steps through adaptflow's own loop on the GPU (train.device: cuda,
mixed_precision: auto = bf16 where the GPU has it). Per run it prints examples/s, tokens/s,
model FLOP utilisation against this GPU's measured bf16 matmul peak, peak GPU memory, and the
test accuracy reached. Without CUDA it says so and exits 0: nothing here is measured on a CPU.

  .venv/bin/python bench/gpu.py [--steps 200] [--test-examples 1000]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, table, write  # noqa: E402
from bench.training import flops_per_token, matmul_params  # noqa: E402

RUNS = [(None, "lora"), (None, "full_finetune"), ("causal", "lora"), ("causal", "full_finetune")]


def cuda_matmul_peak(dtype, n: int = 8192, repeats: int = 10) -> float:
    import torch

    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def splits(settings):
    from bench.common import default_splits

    return default_splits(settings)


def one_run(profile: str | None, name: str, steps: int, test_examples: int, peak: float, device: str = "cuda") -> dict:
    import torch

    from tasks.config import load_settings
    from tasks.evaluation.cost import count_parameters
    from tasks.evaluation.quality import score
    from tasks.models.base import load_base
    from tasks.training.hardware import check_hardware
    from tasks.training.loop import seed_everything, train
    from tasks.training.loop_settings import loop_config
    from tasks.training.run import prepare_inputs

    settings = load_settings(ROOT / "params.yaml", profile, [name], {"train": {"device": device}})
    hardware = check_hardware(settings.train)
    base = load_base(settings.model.base, settings.root)
    inputs = prepare_inputs(settings, base, splits(settings), name)
    bs = settings.train.batch_size
    train_set = inputs.splits["train"].select(list(range(min(steps * bs, len(inputs.splits["train"])))))
    seed_everything(settings.train.seed)
    model = inputs.strategy.build(base.path, inputs.head, inputs.params)
    trainable, _ = count_parameters(model)
    cfg = loop_config(inputs.params, settings.train, hardware, epochs=1, eval_every=10**9, group_by_length=True)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = train(model, train_set, inputs.splits["validation"].select(list(range(bs))), cfg, inputs.pad_id, name)
    test = inputs.splits["test"].select(list(range(min(test_examples, len(inputs.splits["test"])))))
    quality = score(model, test, len(inputs.labels), inputs.pad_id)
    tokens = sum(len(ids) for ids in train_set.input_ids)
    flops = flops_per_token(name, matmul_params(base.path), trainable) * tokens / result.train_seconds
    return {"profile": profile or "default", "strategy": name, "precision": hardware.precision,
            "steps": result.steps, "examples_per_s": len(train_set) / result.train_seconds,
            "tokens_per_s": tokens / result.train_seconds, "mfu_bf16": flops / 1e9 / peak,
            "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0,
            "test_accuracy": quality.accuracy, "test_examples": len(test)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per run (default 200)")
    parser.add_argument("--test-examples", type=int, default=1000)
    args = parser.parse_args()
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    import torch

    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device on this machine (torch.cuda.is_available() is False); "
              "nothing measured. Run it where there is a GPU.")
        return 0
    peak = cuda_matmul_peak(torch.bfloat16)
    print(f"{torch.cuda.get_device_name(0)}: bf16 matmul peak {peak:.0f} GFLOP/s (8192^2)", flush=True)
    rows = []
    for profile, name in RUNS:
        rows.append(one_run(profile, name, args.steps, args.test_examples, peak))
        print(table(rows[-1:]), flush=True)
    print("\n" + table(rows))
    out = write("gpu", {"gpu": torch.cuda.get_device_name(0), "bf16_matmul_gflops": peak, "rows": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
