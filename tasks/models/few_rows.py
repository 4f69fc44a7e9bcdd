"""Linear layers on a few rows, as greedy decoding runs them (one new token per sequence: 16-48
rows a step). `F.linear(x, W)` is x @ Wᵀ, which MKL's CPU sgemm runs slowly when x has few rows;
the same product as (W @ xᵀ)ᵀ puts the few rows on the other side of the kernel and gives the
same numbers. Measured on a 2-core AMD EPYC (AVX2, MKL 2024.2, fp32, 16 rows): SmolLM2's LM head
(49,152 x 576) 28.1 -> 16.7 ms, its MLP layers 0.33 -> 0.27 ms; largest difference 0.0 at 1, 16
and 32 rows. bench/generation.py, 40 headlines at 16 a batch after the prefix cache: zero_shot
14.5 -> 11.9 s, lora 15.8 -> 13.8 s, the same outputs.

A strided input (generate()'s first step hands the LM head each row's last position) is made
contiguous first, whatever its precision: see `_forward`.

Within the block, each of the model's `nn.Linear` layers runs through `_forward`; a layer's
forward is set on the instance and removed after, so nothing else changes (one thread at a time:
evaluation's, or the server's inference thread). A torch function mode did the same for every
torch call of the pass, and that interception cost time: 63.8 s against 61.8 s this way (250
headlines at 48 a batch; 97.7 s plain at 16)."""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

# Up to this many rows, flipped; prefill (rows x prompt tokens) stays as it is: MKL reached 150
# GFLOP/s there either way. 64 rows measured faster flipped (48 and 64-row decode batches).
MAX_ROWS = 64


@contextmanager
def few_row_linear(model: nn.Module) -> Iterator[None]:
    """Linear layers without bias on at most MAX_ROWS fp32 CPU rows run as (W @ xᵀ)ᵀ within the
    block; every other call as before, on a contiguous input."""
    layers = [m for m in model.modules() if type(m) is nn.Linear and "forward" not in m.__dict__]
    for layer in layers:
        layer.forward = functools.partial(_forward, layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


def _forward(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    weight = layer.weight
    if (layer.bias is None and x.dim() >= 2 and x.numel() <= MAX_ROWS * x.shape[-1]
            and x.dtype == weight.dtype == torch.float32 and x.device.type == weight.device.type == "cpu"):
        rows = x.reshape(-1, x.shape[-1])
        return (weight @ rows.t()).t().reshape(*x.shape[:-1], weight.shape[0])
    if not x.is_contiguous():
        # generate()'s first step keeps each row's last position only (hidden[:, -1:]), a strided
        # (rows, 1, d) view, which matmul runs, for a weight that needs no gradient (a frozen
        # base's, a loaded model's), as a batched product over `rows` copies of the weight: in
        # bf16, 3.3 s to copy SmolLM2's LM head 48 times, 37 % of a 48-row batch (torch.profiler,
        # AMX Xeon); 250 headlines at 48 a batch took 19.0-21.3 s after against 38.7-40.3 s
        # before, the same outputs. fp32 took the flip above.
        x = x.contiguous()
    return F.linear(x, weight, layer.bias)
