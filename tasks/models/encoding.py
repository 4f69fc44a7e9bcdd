"""Tokenise a split once and hand out dynamically padded batches."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from tasks.models.subset import subset_indices


@dataclass(frozen=True)
class Encoded:
    """Token ids per example (unpadded) and integer labels. Generation (tasks/models/prompts.py):
    each example is prompt + target, `prompt_lengths` where its target starts (the tokens before
    carry no loss), `references` the target texts and `sources` the input texts."""

    input_ids: list[list[int]]
    labels: np.ndarray
    prompt_lengths: np.ndarray | None = None
    references: tuple[str, ...] | None = None
    sources: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def generates(self) -> bool:
        return self.prompt_lengths is not None

    def batch_labels(self, idx) -> torch.Tensor:
        """Class ids, or (generation) the ids to predict per position: -100 (no loss) on the
        prompt and on padding."""
        if not self.generates:
            return torch.from_numpy(self.labels[idx])
        rows = [self.input_ids[i] for i in idx]
        out = torch.full((len(rows), max(len(r) for r in rows)), -100, dtype=torch.long)
        for j, (r, i) in enumerate(zip(rows, idx)):
            start = int(self.prompt_lengths[i])
            out[j, start:len(r)] = torch.tensor(r[start:], dtype=torch.long)
        return out

    def subset(self, n: int, seed: int) -> "Encoded":
        """A reproducible random subset of n examples (n <= 0 or n >= len: everything)."""
        return self.select(subset_indices(len(self), n, seed))

    def select(self, idx: np.ndarray) -> "Encoded":
        """The examples at these positions, in this order."""
        pick = lambda seq: None if seq is None else tuple(seq[i] for i in idx)
        return Encoded([self.input_ids[i] for i in idx], self.labels[idx],
                       None if self.prompt_lengths is None else self.prompt_lengths[idx],
                       pick(self.references), pick(self.sources))


def encode(tokenizer, texts: list[str], labels: np.ndarray, max_length: int,
           contexts: list[str] | None = None, extra_tokens: int = 0) -> Encoded:
    """Token ids of each text, cut at max_length. `contexts`: a second segment per text (retrieved
    examples, tasks/strategies/with_retrieval.py), encoded as a pair within max_length +
    extra_tokens (the longer of the two segments is cut first). `sources` keeps the texts."""
    if contexts is None:
        ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    else:
        ids = tokenizer(list(texts), list(contexts), truncation="longest_first",
                        max_length=max_length + extra_tokens)["input_ids"]
    return Encoded(ids, np.asarray(labels, dtype=np.int64), sources=tuple(texts))


def encode_requests(model, tokenizer, texts: list[str], max_length: int) -> Encoded:
    """Texts as `model` reads them: with its retrieved context when it retrieves (`augment_texts`),
    exactly as its training examples were built."""
    augment = getattr(model, "augment_texts", None)
    contexts, extra = augment(list(texts)) if augment is not None else (None, 0)
    return encode(tokenizer, texts, np.zeros(len(texts), dtype=np.int64), max_length, contexts, extra)


def collate(rows: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest row of this batch only (dynamic padding)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def pack_rows(lengths: list[int], width: int) -> list[list[int]]:
    """Positions of examples per row, first-fit over lengths in decreasing order, each row at most
    `width` tokens (an example longer than `width` gets a row of its own)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        slot = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if slot is None:
            rows.append([i])
            room.append(width - lengths[i])
        else:
            rows[slot].append(i)
            room[slot] -= lengths[i]
    return rows


def collate_packed(data: "Encoded", idx, pad_id: int) -> dict[str, torch.Tensor]:
    """Generation SFT: the examples at `idx` packed several to a row, no row wider than the longest
    example (so never more memory than the padded batch). Position ids restart at 0 for each
    example and no attention mask is passed: transformers (masking_utils.find_packed_sequence_indices)
    then keeps each token's attention inside its own example. Labels are each example's own (-100 on
    its prompt), so the loss covers the same target tokens as the padded batch; the shift in
    batch_loss never crosses into the next example, whose first token is a prompt token (-100).
    `examples` counts what the batch holds (its rows are fewer)."""
    idx = [int(i) for i in idx]
    labels = data.batch_labels(idx)
    lengths = [len(data.input_ids[i]) for i in idx]
    rows = pack_rows(lengths, max(lengths))
    width = max(sum(lengths[j] for j in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    targets = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for j in row:
            n = lengths[j]
            ids[r, at:at + n] = torch.tensor(data.input_ids[idx[j]], dtype=torch.long)
            positions[r, at:at + n] = torch.arange(n)
            targets[r, at:at + n] = labels[j, :n]
            at += n
        # The row's padding continues its last example's positions (no new sequence starts there);
        # it carries no loss, and causal attention keeps it from reaching any earlier token.
        positions[r, at:] = torch.arange(positions[r, at - 1] + 1, positions[r, at - 1] + 1 + width - at)
    # use_cache False: with a cache (Llama's default) transformers skips the packed-sequence mask
    # and every example after a row's first would attend to the ones before it.
    return {"input_ids": ids, "position_ids": positions, "use_cache": False, "labels": targets,
            "examples": torch.tensor(len(idx))}


def on_device(inputs: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The batch on the device the model's weights are on (after GPU training they are on the GPU;
    on a CPU this moves nothing)."""
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in inputs.items()}


def length_grouped_order(lengths: list[int], batch_size: int, seed: int, pool_batches: int = 50) -> np.ndarray:
    """A shuffled order in which each batch holds examples of similar length (the idea of
    Hugging Face's LengthGroupedSampler): a seeded permutation is cut into pools of
    `pool_batches` batches, each pool is sorted by length and cut into batches, and the batches
    are shuffled. Every example appears once; batches stay random in content and order (a short last one stays last)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(lengths))
    pool = pool_batches * batch_size
    ranked = [sorted(perm[i : i + pool], key=lambda j: -lengths[j]) for i in range(0, len(perm), pool)]
    order = np.concatenate(ranked) if ranked else perm
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    # Only whole batches are shuffled: a short one in the middle would shift every later batch
    # boundary (callers cut the order every batch_size) and undo the grouping.
    whole = [c for c in chunks if len(c) == batch_size]
    short = [c for c in chunks if len(c) < batch_size]
    return np.concatenate([whole[i] for i in rng.permutation(len(whole))] + short) if chunks else order


def shuffled_order(lengths: list[int], batch_size: int, seed: int, group_by_length: bool) -> np.ndarray:
    """One epoch's order: a seeded permutation, length-grouped into batches of `batch_size` if asked."""
    if group_by_length:
        return length_grouped_order(lengths, batch_size, seed)
    return np.random.default_rng(seed).permutation(len(lengths))


def micro_batches(data: Encoded, batch_size: int, effective_batch: int, seed: int,
                  group_by_length: bool) -> list[np.ndarray]:
    """One epoch as micro-batches of `batch_size`: the order is drawn in effective batches
    (batch_size x accumulation x processes), each then cut into micro-batches, so every
    combination of accumulation and processes trains on the same effective batches; with no
    accumulation and one process it is `batches(..., shuffle_seed=seed)`'s order."""
    order = shuffled_order([len(r) for r in data.input_ids], effective_batch, seed, group_by_length)
    return [order[i : i + batch_size] for e in range(0, len(order), effective_batch)
            for i in range(e, min(e + effective_batch, len(order)), batch_size)]


def batches(data: Encoded, batch_size: int, pad_id: int, shuffle_seed: int | None = None,
            group_by_length: bool = False) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor], torch.Tensor]]:
    """Yield (indices, model inputs, labels). Without a seed, batches follow length order,
    which keeps padding small for evaluation; indices let callers restore the input order.
    With a seed, a shuffled order, length-grouped if asked (less padding per batch)."""
    if shuffle_seed is None:
        order = np.argsort([len(r) for r in data.input_ids], kind="stable")
    else:
        order = shuffled_order([len(r) for r in data.input_ids], batch_size, shuffle_seed, group_by_length)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, collate([data.input_ids[i] for i in idx], pad_id), data.batch_labels(idx)
