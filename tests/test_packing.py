"""Packed generation batches (train.pack_generation): several (prompt, target) examples to a row,
attention kept inside each example, the loss on target tokens only and equal to the padded batch's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.models.encoding import Encoded, collate, collate_packed, pack_rows
from tasks.training.losses import batch_loss


def test_rows_are_filled_first_fit_and_never_wider_than_asked():
    rows = pack_rows([5, 3, 9, 2, 4, 1], 9)
    assert sorted(i for row in rows for i in row) == list(range(6))
    assert all(sum([5, 3, 9, 2, 4, 1][i] for i in row) <= 9 for row in rows)
    assert len(rows) == 3                     # 24 tokens in rows of 9: three is the fewest
    assert pack_rows([12, 3], 9) == [[0], [1]]  # longer than a row: a row of its own


def _examples(seed: int, n: int, vocab: int) -> Encoded:
    rng = np.random.default_rng(seed)
    ids, prompts = [], []
    for _ in range(n):
        prompt, target = int(rng.integers(2, 9)), int(rng.integers(1, 6))
        ids.append([int(t) for t in rng.integers(3, vocab, prompt + target)])
        prompts.append(prompt)
    return Encoded(ids, np.zeros(n, dtype=np.int64), prompt_lengths=np.array(prompts))


def test_a_packed_batch_has_the_padded_batchs_loss_and_gradients(tiny_llama):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, attn_implementation="sdpa").eval()
    data = _examples(0, 12, model.config.vocab_size)
    idx = list(range(12))
    packed = collate_packed(data, idx, pad_id=0)
    assert int(packed["examples"]) == 12 and packed["input_ids"].shape[0] < 12   # fewer rows
    assert packed["input_ids"].shape[1] == max(len(r) for r in data.input_ids)   # no wider than the longest
    # The same target tokens carry the loss.
    padded_labels = data.batch_labels(idx)
    assert int((packed["labels"][:, 1:] != -100).sum()) == int((padded_labels[:, 1:] != -100).sum())

    def loss_and_grad(inputs, labels):
        model.zero_grad()
        loss = batch_loss(model(**inputs).logits, labels)
        loss.backward()
        return loss.item(), model.model.embed_tokens.weight.grad.clone()

    padded_loss, padded_grad = loss_and_grad(collate(data.input_ids, 0), padded_labels)
    packed_loss, packed_grad = loss_and_grad({k: packed[k] for k in ("input_ids", "position_ids", "use_cache")}, packed["labels"])
    assert packed_loss == pytest.approx(padded_loss, rel=1e-5)
    torch.testing.assert_close(packed_grad, padded_grad, rtol=1e-4, atol=1e-6)
    # Without position ids restarting per example the attention would cross examples: the loss moves.
    crossing = {"input_ids": packed["input_ids"], "attention_mask": torch.ones_like(packed["input_ids"])}
    assert batch_loss(model(**crossing).logits, packed["labels"]).item() != pytest.approx(padded_loss, rel=1e-5)
