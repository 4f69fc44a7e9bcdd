"""Tokenise a split once and hand out dynamically padded batches."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch


@dataclass(frozen=True)
class Encoded:
    """Token ids per example (unpadded) and integer labels."""

    input_ids: list[list[int]]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    def subset(self, n: int, seed: int) -> "Encoded":
        """A reproducible random subset of n examples (n <= 0 or n >= len: everything)."""
        return self.select(subset_indices(len(self), n, seed))

    def select(self, idx: np.ndarray) -> "Encoded":
        """The examples at these positions, in this order."""
        return Encoded([self.input_ids[i] for i in idx], self.labels[idx])


def subset_indices(total: int, n: int, seed: int) -> np.ndarray:
    """The rows a limit of n keeps, in order; the same rows wherever the limit is applied."""
    if n <= 0 or n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))


def encode(tokenizer, texts: list[str], labels: np.ndarray, max_length: int) -> Encoded:
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return Encoded(ids, np.asarray(labels, dtype=np.int64))


def collate(rows: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest row of this batch only (dynamic padding)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def batches(data: Encoded, batch_size: int, pad_id: int, shuffle_seed: int | None = None
            ) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor], torch.Tensor]]:
    """Yield (indices, model inputs, labels). Without a seed, batches follow length order,
    which keeps padding small for evaluation; indices let callers restore the input order."""
    if shuffle_seed is None:
        order = np.argsort([len(r) for r in data.input_ids], kind="stable")
    else:
        order = np.random.default_rng(shuffle_seed).permutation(len(data))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, collate([data.input_ids[i] for i in idx], pad_id), torch.from_numpy(data.labels[idx])
