"""The training data as a torch DataLoader that `accelerate` can shard over processes: one
epoch's micro-batches (tasks/models/encoding.micro_batches), dynamically padded."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tasks.models.encoding import Encoded, collate, collate_packed, micro_batches


class _Indices(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class EpochBatches(Sampler):
    """A batch sampler over one epoch's micro-batches. `batch_size` and `drop_last` are what
    accelerate's BatchSamplerShard reads to hand every process its share."""

    def __init__(self, batches: list):
        self.batches = [[int(i) for i in b] for b in batches]
        self.batch_size = max((len(b) for b in self.batches), default=1)
        self.drop_last = False

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def epoch_loader(data: Encoded, pad_id: int, batch_size: int, effective_batch: int, seed: int,
                 group_by_length: bool, pack: bool = False) -> DataLoader:
    """A DataLoader of (input_ids, attention_mask, labels) batches, in the epoch's seeded order;
    `pack` (generation only): the same micro-batches, several examples to a row (collate_packed)."""
    def collate_fn(indices: list[int]) -> dict[str, torch.Tensor]:
        if pack and data.generates:
            return collate_packed(data, indices, pad_id)
        return {**collate([data.input_ids[i] for i in indices], pad_id), "labels": data.batch_labels(indices)}

    sampler = EpochBatches(micro_batches(data, batch_size, effective_batch, seed, group_by_length))
    # A generator of its own: torch's DataLoader draws a seed for its workers at every iteration
    # start, from the global generator otherwise, which would shift dropout after a resume.
    return DataLoader(_Indices(len(data)), batch_sampler=sampler, collate_fn=collate_fn,
                      generator=torch.Generator().manual_seed(seed))
