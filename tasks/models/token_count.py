"""Counting a base's tokens for the split gate, without transformers once its tokenizer is cached."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

from tasks.models.causal_lm import cache_root
from tasks.models.loading import load_tokenizer, quiet_transformers


def token_counter(path: Path, fingerprint: str) -> Callable[[list[str]], list[int]]:
    """Tokens per text, special tokens included, as the base's tokenizer gives them.

    A fast tokenizer's counts come from the Rust tokenizer it runs (`tokenizers`, truncation and
    padding off): the same counts, since the transformers wrapper calls it, for 0.06 s of CPU per
    5,000 reviews instead of 0.1-0.27 s. It is kept in the cache as its JSON (to_str: normalizer,
    pre-tokenizer, model, post-processor, added tokens, as transformers set them up), by the
    base's fingerprint (weights and tokenizer files) and both libraries' versions, so a later run
    reads it without importing transformers' tokenizer classes (1.2 s of the flow's CPU on the AMX
    Xeon; the strategies import them in their own processes). A slow tokenizer counts through
    transformers, loaded once."""
    from importlib.metadata import version

    from tokenizers import Tokenizer

    key = hashlib.sha256(f"{fingerprint} {version('transformers')} {version('tokenizers')}".encode()).hexdigest()
    cached = cache_root() / "tokenizers" / f"{key[:24]}.json"
    if cached.is_file():
        backend = Tokenizer.from_file(str(cached))
    else:
        tokenizer = load_tokenizer(path)
        if not getattr(tokenizer, "is_fast", False):
            return _slow_counter(tokenizer)
        backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())   # a copy: no truncation, no padding
        backend.no_truncation()
        backend.no_padding()
        _keep(cached, backend.to_str())
    return lambda texts: [len(encoding) for encoding in backend.encode_batch_fast(list(texts))]


def _keep(path: Path, text: str) -> None:
    """Written whole, then renamed: a run reading it beside this one sees all of it or none."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(path)
    except OSError:   # a read-only cache: transformers loads it again next time, nothing else changes
        pass


def _slow_counter(tokenizer) -> Callable[[list[str]], list[int]]:
    def count(texts: list[str]) -> list[int]:
        if not texts:
            return []
        with quiet_transformers():   # "sequence longer than the maximum": counting is the point
            return [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]
    return count
