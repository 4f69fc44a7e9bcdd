"""Generation in bf16 on the model's own fp32 weights: within `weights_in`, every floating-point
parameter holds a bf16 copy of its values and gets its fp32 tensor back at the end, bit for bit.
The saved, registered and reloaded model stays fp32; only the arithmetic of the block changes.

Why the weights and not autocast: greedy decoding runs one token at a time, and autocast casts
every weight again on every step. `bench/generation.py --texts 96 --batches 48 --bf16` (SmolLM2-135M,
headlines test leads, Intel Xeon with AMX, 2 threads, 57e2c2b): zero_shot 16.2 s against 22.9 s
in fp32 (1.41x), lora 16.5 against 22.5 s (1.36x). A round trip of its weights takes ~115 ms.
Buffers stay as they are: the rotary embedding's inverse frequencies are fp32 on purpose."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
MIXED = {"bf16": torch.bfloat16, "fp16": torch.float16}   # accelerate's mixed_precision names; "no" is fp32


def weights_kept_in(model: nn.Module, precision: str) -> nn.Module:
    """`model` with its floating-point parameters in `precision` for good: a served version that
    generates in bf16 converts once when it loads, not on every pass (`weights_in` then finds
    nothing to convert)."""
    dtype = PRECISIONS[precision]
    for p in _other_than(model, dtype):
        p.data = p.data.to(dtype)
    return model


@contextmanager
def weights_in(model: nn.Module, precision: str) -> Iterator[nn.Module]:
    """`model` with its floating-point parameters in `precision` (fp32 | bf16) within the block;
    their own tensors are restored after, also on an error. One thread at a time: evaluation's,
    or the server's inference thread, as every pass on a model."""
    dtype = PRECISIONS[precision]
    kept = [(p, p.data) for p in _other_than(model, dtype)]
    try:
        for p, data in kept:
            p.data = data.to(dtype)
        yield model
    finally:
        for p, data in kept:
            p.data = data


def _other_than(model: nn.Module, dtype: torch.dtype) -> list[nn.Parameter]:
    """The floating-point parameters not in `dtype` (tied weights once: parameters() dedupes)."""
    return [p for p in model.parameters() if p.is_floating_point() and p.dtype != dtype]


@contextmanager
def autocast_in(model: nn.Module, mixed_precision: str) -> Iterator[None]:
    """Passes that only read a model -- a validation loss, the forgetting probe's features -- in the
    run's training precision (accelerate's names: no | bf16 | fp16), under the autocast the
    training loop's own validation checks ran in: the check that kept the weights is then the
    run's validation loss, not measured again. "no" changes nothing; which precision a run
    passes is tasks/training/hardware.py's evaluation_precision. The forgetting probe's features
    of SmolLM2-135M (300 articles, 64 tokens) took 6.8 s under bf16 autocast against 18.3 s in
    fp32, with the same probe accuracy (Intel Xeon with AMX, 2 threads; bench/eval_precision.py)."""
    dtype = MIXED.get(mixed_precision)
    if dtype is None:
        yield
        return
    device = next(model.parameters()).device.type
    with torch.autocast(device, dtype=dtype):
        yield
