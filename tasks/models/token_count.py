"""The tokenizer that counts tokens for the split gate, without transformers once it is cached."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tasks.models.causal_lm import cache_root
from tasks.models.loading import load_tokenizer


def counting_tokenizer(path: Path, fingerprint: str):
    """The Rust tokenizer (`tokenizers`) that the base's fast tokenizer runs, with truncation and
    padding off: it counts the tokens the transformers wrapper would give, since the wrapper
    calls it. Kept in the cache as its JSON (to_str: normalizer, pre-tokenizer, model,
    post-processor, added tokens, all as transformers set them up), by the base's fingerprint
    (weights and tokenizer files) and both libraries' versions, so a later run reads it without
    importing transformers' tokenizer classes (1.2 s of the flow's CPU on the AMX Xeon; the
    strategies import them in their own processes). None when the base has no fast tokenizer."""
    from importlib.metadata import version

    from tokenizers import Tokenizer

    key = hashlib.sha256(f"{fingerprint} {version('transformers')} {version('tokenizers')}".encode()).hexdigest()
    cached = cache_root() / "tokenizers" / f"{key[:24]}.json"
    if cached.is_file():
        return Tokenizer.from_file(str(cached))
    tokenizer = load_tokenizer(path)
    if not getattr(tokenizer, "is_fast", False):
        return None
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())   # a copy: no truncation, no padding
    backend.no_truncation()
    backend.no_padding()
    try:   # written whole, then renamed: a run reading it beside this one sees all of it or none
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
        tmp.write_text(backend.to_str())
        tmp.replace(cached)
    except OSError:   # a read-only cache: transformers loads it again next time, nothing else changes
        pass
    return backend
