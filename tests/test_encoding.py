"""Batching: length-grouped order is a seeded permutation whose batches hold similar lengths."""
from __future__ import annotations

import numpy as np
import torch

from tasks.models.encoding import Encoded, batches, length_grouped_order


def padded_tokens(lengths: list[int], order: np.ndarray, batch_size: int) -> int:
    return sum(batch_size * max(lengths[i] for i in order[s:s + batch_size]) for s in range(0, len(order), batch_size))


def test_length_grouped_order_is_a_reproducible_permutation_with_less_padding():
    lengths = list(np.random.default_rng(0).integers(5, 65, size=1003))
    order = length_grouped_order(lengths, batch_size=16, seed=13)
    assert sorted(order.tolist()) == list(range(1003))
    assert np.array_equal(order, length_grouped_order(lengths, batch_size=16, seed=13))
    assert not np.array_equal(order, length_grouped_order(lengths, batch_size=16, seed=14))
    shuffled = np.random.default_rng(13).permutation(1003)
    # uniform lengths 5..64: random batches of 16 pad to ~61, grouped ones to about their own length
    assert padded_tokens(lengths, order, 16) < 0.65 * padded_tokens(lengths, shuffled, 16)


def test_grouped_batches_cover_every_example_once():
    rng = np.random.default_rng(1)
    data = Encoded([[1] * int(n) for n in rng.integers(1, 30, size=100)], rng.integers(0, 2, size=100))
    seen = []
    for idx, inputs, labels in batches(data, 8, pad_id=0, shuffle_seed=3, group_by_length=True):
        seen += idx.tolist()
        assert inputs["input_ids"].shape[1] == max(len(data.input_ids[i]) for i in idx)
        assert torch.equal(labels, torch.from_numpy(data.labels[idx]))
    assert sorted(seen) == list(range(100))
