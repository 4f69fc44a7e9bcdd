"""What the retrieval strategies share: the index of the train split the run hands them, built
once per data version and encoder (cached under ADAPTFLOW_CACHE), the data version itself, and
what the neighbours add to an input, one function per task (classification_context,
generation_formats), used in training, evaluation and serving."""
from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import field
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.models.base import load_base
from tasks.models.causal_lm import cache_root, save_atomically
from tasks.models.prompts import PromptFormat
from tasks.models.retrieval import META_FILE, RetrievalError, RetrievalIndex


def data_version(train: pd.DataFrame, answer_col: str) -> str:
    """The train split's identity: sha256 of its (input, answer) rows in order."""
    digest = hashlib.sha256()
    for text, answer in zip(train["text"].astype(str), train[answer_col].astype(str)):
        digest.update(text.encode() + b"\x1f" + answer.encode() + b"\x1e")
    return digest.hexdigest()


@functools.lru_cache(maxsize=2)
def _encoder(embedder: str):
    """The encoder resolved and fingerprinted once per process (hashing MiniLM's 90 MB each time
    the index is found, then loaded, would read it twice per strategy)."""
    return load_base(embedder)


def train_index(train: pd.DataFrame, answer_col: str, embedder: str) -> tuple[Path, str]:
    """(the folder of the index of `train`, its data version); built when not cached yet."""
    encoder = _encoder(embedder)
    version = data_version(train, answer_col)
    folder = cache_root() / "retrieval" / f"{version[:16]}-{encoder.fingerprint[:12]}"
    if not (folder / META_FILE).is_file():
        # Built in a folder of its own (mkdtemp) and renamed into place: concurrent runs each build
        # their own, the first rename wins and the others find it whole; a reader sees a whole
        # index or none (one fixed .tmp name let two runs write into, and publish, each other's).
        save_atomically(lambda tmp: RetrievalIndex.build(
            encoder, train["text"].astype(str).tolist(), train[answer_col].astype(str).tolist(), version).save(tmp),
            folder)
        if not (folder / META_FILE).is_file():
            raise RetrievalError(f"{folder} is in the way of the retrieval index and holds no {META_FILE}: "
                                 f"remove it and run again")
    return folder, version


def load_index(folder: str | Path, embedder: str, version: str) -> RetrievalIndex:
    if not str(folder):
        raise ValueError("this strategy has no index: the run builds it from the train split")
    return RetrievalIndex.load(Path(folder), _encoder(embedder), version)


def timed_neighbours(index: RetrievalIndex, texts: list[str], k: int, single_query_ms: list[float]
                     ) -> list[list[tuple[str, str]]]:
    """index.neighbours; a one-text call (a user's request) also records its milliseconds."""
    start = time.perf_counter()
    rows = index.neighbours(list(texts), k)
    if len(texts) == 1:
        single_query_ms.append((time.perf_counter() - start) * 1000)
    return rows


def classification_context(rows: list[list[tuple[str, str]]], cut: int) -> list[str]:
    """The second segment of each input: its neighbours with their labels, nearest first."""
    return [" | ".join(f"{label}: {text[:cut]}" for text, label in row) for row in rows]


def generation_formats(rows: list[list[tuple[str, str]]], fmt: PromptFormat, cut: int) -> list[PromptFormat]:
    """Each input's prompt: `fmt` with its neighbours (each input cut to `cut` characters) as
    earlier chat turns (retrieval_few_shot and `<name>+retrieval` for generation)."""
    return [PromptFormat(fmt.system_prompt, fmt.instruction, tuple((t[:cut], y) for t, y in row)) for row in rows]


def cost_metrics(index: RetrievalIndex, single_query_ms: list[float], extra_tokens: list[int]) -> dict[str, float]:
    """What retrieval costs: the index (rows, bytes, build seconds), one query's latency
    (embedding + search; p50/p95 over the one-text calls) and the prompt tokens the retrieved
    demonstrations add, on average."""
    out = {"index_rows": float(index.identity.rows), "index_bytes": float(index.size_bytes()),
           "index_build_seconds": index.build_seconds,
           "retrieval_extra_prompt_tokens": float(np.mean(extra_tokens)) if extra_tokens else 0.0}
    if single_query_ms:
        out |= {"retrieval_ms_p50": float(np.percentile(single_query_ms, 50)),
                "retrieval_ms_p95": float(np.percentile(single_query_ms, 95))}
    return out


def filled_by_run(what: str):
    """A params field the run fills in (and the version saves), not a user setting: the index's
    folder and the data version it is bound to, in every retrieving strategy's params."""
    return field(default="", metadata={"help": f"filled by the run (and saved): {what}; not a setting"})


def measure_retrieval(model, texts: list[str], tokenizer, fmt: PromptFormat | None = None) -> dict[str, float]:
    """A retrieving strategy's declared `retrieval_metrics`: what its model measures of its index
    (generation passes the run's prompt format `fmt`; prompting models use their own)."""
    return model.retrieval_metrics(list(texts), tokenizer, fmt)
