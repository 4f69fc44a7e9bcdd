"""Mixed LoRA passes with one batched product per layer, as S-LoRA and Punica do on GPUs.

PEFT 0.21's mixed batches (`adapter_names=`) run, in every LoRA layer, one sub-batch per distinct
version: gather its rows, two small matmuls, scatter them back. Each distinct version in a pass
cost 3.5-3.7 ms on MiniLM (12 LoRA layers; bench/serving.py --tenants, AMD EPYC, 2 threads), so a
pass over 32 versions' requests ran at 70 % of one version's throughput. Here every layer stacks
the versions it holds once (A: versions x rank x in, B scaled: versions x out x rank; ranks
padded with zeros to the largest, which adds nothing), picks each row's pair with one index, and
adds x A_row^T B_row^T with two batched matmuls, whatever the number of versions.

`install` puts it on each LoRA `Linear` of a shared model (an instance attribute that shadows
PEFT's method); anything it does not cover goes to PEFT's own method unchanged: training mode,
rows for the base alone, LoRA variants (DoRA, aLoRA), LoRA biases, extra arguments.
"""
from __future__ import annotations

import types

import torch
from torch import nn

_STACK = "_adaptflow_lora_stack"


def install(model: nn.Module) -> None:
    """Batched mixed passes on every LoRA Linear in `model` (again after each attach: a version
    with other target modules brings new layers)."""
    from peft.tuners.lora.layer import Linear

    for module in model.modules():
        if type(module) is Linear and "_mixed_batch_forward" not in vars(module):
            module._mixed_batch_forward = types.MethodType(_batched_forward, module)


def _batched_forward(self, x: torch.Tensor, *args, adapter_names: list[str], **kwargs) -> torch.Tensor:
    if not _covered(self, adapter_names, kwargs):
        return type(self)._mixed_batch_forward(self, x, *args, adapter_names=adapter_names, **kwargs)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}   # PEFT passes its variant keys as None
    result = self.base_layer(x, *args, **kwargs)
    index, a_all, b_all = _stack(self)
    rows = torch.tensor([index[name] for name in adapter_names], device=a_all.device)
    a, b = a_all.index_select(0, rows), b_all.index_select(0, rows)   # (batch, rank, in), (batch, out, rank)
    flat = x.to(a.dtype).reshape(x.shape[0], -1, x.shape[-1])      # (batch, positions, in)
    delta = torch.bmm(torch.bmm(flat, a.transpose(1, 2)), b.transpose(1, 2))
    return result + delta.reshape(*result.shape).to(result.dtype)


def _covered(layer, names: list[str], kwargs: dict) -> bool:
    return (not layer.training and all(n in layer.lora_A for n in names)
            and not any(n in layer.lora_variant for n in names)
            and all(layer.lora_B[n].bias is None and layer.lora_A[n].bias is None for n in set(names))
            and all(v is None for v in kwargs.values()))


def _stack(layer) -> tuple[dict[str, int], torch.Tensor, torch.Tensor]:
    """The layer's versions stacked, rebuilt when a version is attached, removed or changed in place."""
    names = list(layer.lora_A.keys())
    key = tuple((n, id(layer.lora_A[n].weight), layer.lora_A[n].weight._version, id(layer.lora_B[n].weight),
                 layer.lora_B[n].weight._version, layer.scaling[n]) for n in names)
    cached = getattr(layer, _STACK, None)
    if cached is not None and cached[0] == key:
        return cached[1:]
    rank = max(layer.lora_A[n].weight.shape[0] for n in names)
    a_all = torch.zeros(len(names), rank, layer.in_features, dtype=layer.lora_A[names[0]].weight.dtype,
                        device=layer.lora_A[names[0]].weight.device)
    b_all = torch.zeros(len(names), layer.out_features, rank, dtype=a_all.dtype, device=a_all.device)
    with torch.no_grad():
        for i, n in enumerate(names):
            r = layer.lora_A[n].weight.shape[0]
            a_all[i, :r] = layer.lora_A[n].weight
            b_all[i, :, :r] = layer.lora_B[n].weight * layer.scaling[n]
    index = {n: i for i, n in enumerate(names)}
    object.__setattr__(layer, _STACK, (key, index, a_all, b_all))   # a cache, not a parameter or buffer
    return index, a_all, b_all
