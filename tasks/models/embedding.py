"""Sentence embeddings with a frozen encoder (MiniLM): unit-length mean-pooled last-layer
states, the way the sentence encoder was trained to be compared. Used by classification's
zero_shot (label prototypes, ZeroShotClassifier), by generation's output/reference similarity
and by the retrieval index (tasks/models/retrieval.py)."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from tasks.models.loading import load_frozen


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def embed(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Unit-length mean-pooled sentence embeddings."""
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)


@functools.lru_cache(maxsize=1)
def frozen_encoder(base_dir: Path) -> nn.Module:
    """One frozen copy per process (a BERT pooler loads unused: the mean over tokens is the embedding)."""
    from transformers import AutoModel

    return load_frozen(AutoModel, base_dir)


@functools.lru_cache(maxsize=2)
def _tokenizer(path: Path):
    from tasks.models.loading import load_tokenizer

    return load_tokenizer(path)


def embed_texts(texts: list[str], path: Path | None = None, batch_size: int = 64, max_length: int = 128
                ) -> np.ndarray:
    """Unit-length sentence embeddings of `texts` (one float32 row each, in their order) with the
    encoder in `path` (None: the packaged MiniLM), inputs cut to `max_length` tokens (MiniLM was
    trained on 128). Batches hold texts of similar length (padding is masked out of the attention
    and the mean, so only the rounding differs: at most 2.9e-7 here): the 9,907 train reviews of
    the default data embed in 26.6-27.2 s against 52.8-53.2 s in their own order (Intel Xeon, 2
    threads), which is the retrieval index's build time."""
    from tasks.models.encoding import batches, encode
    from tasks.models.packaged import minilm_folder

    path = Path(path) if path is not None else minilm_folder()
    tokenizer, encoder = _tokenizer(path), frozen_encoder(path)
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    if not len(texts):   # the tokenizer refuses an empty list
        return out
    data = encode(tokenizer, list(texts), np.zeros(len(texts), dtype=np.int64), max_length)   # tokenized once
    with torch.no_grad():
        for idx, inputs, _ in batches(data, batch_size, tokenizer.pad_token_id):   # in length order
            out[idx] = embed(encoder, inputs["input_ids"], inputs["attention_mask"]).float().numpy()
    return out


class ZeroShotClassifier(nn.Module):
    """classification's zero_shot (tasks/strategies/zero_shot.py): logits are the cosine
    similarities of a text's embedding to each label's prototype, over a temperature."""

    def __init__(self, encoder: nn.Module, label_embeddings: torch.Tensor, params):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("label_embeddings", label_embeddings, persistent=False)
        self.params = params   # saved as the artifact: descriptions are the "model"
        self.temperature = params.temperature   # the encoder is frozen (frozen_encoder)

    def text_features(self, input_ids, attention_mask, **_) -> torch.Tensor:
        """The part every variant shares (tasks/training/variants.py scores them from one pass)."""
        return embed(self.encoder, input_ids, attention_mask)

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.label_embeddings.T / self.temperature

    def forward(self, input_ids, attention_mask, **_) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.logits_from_features(self.text_features(input_ids, attention_mask)))
