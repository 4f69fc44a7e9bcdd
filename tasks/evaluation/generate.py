"""Greedy generation for evaluation and serving: prompts built from input texts with the run's
prompt format (or the model's own, for prompting strategies, or one per input when the model
retrieves demonstrations), batched with left padding, decoded
until the end token or `max_new_tokens`. The prompts' shared start (chat template, system
message, instruction; few-shot's demonstrations) runs once per call or once per prompting
model (tasks/models/prefix_cache.py), and decoding's few-row linear layers run flipped
(tasks/models/few_rows.py): the same outputs, 1.4x faster together (bench/generation.py).
`precision` bf16 generates on bf16 copies of the weights (tasks/models/precision.py): what a run
chose (generation.precision) and its registered version records, so serving answers alike."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from tasks.evaluation.predict import ensure_eval
from tasks.models.few_rows import few_row_linear
from tasks.models.precision import weights_in
from tasks.models.prefix_cache import cache_of, caches_prefix, continues, greedy_after, shared_prefix
from tasks.models.prompts import PromptFormat, end_ids, prompt_ids


@dataclass(frozen=True)
class Generated:
    texts: list[str]             # decoded outputs, in input order
    new_tokens: np.ndarray       # tokens generated per example (the end token not counted)
    hit_cap: np.ndarray          # bool: stopped by max_new_tokens, not by the end token
    seconds: float               # wall time of all batches


@torch.no_grad()
def greedy(model: nn.Module, prompts: list[list[int]], pad_id: int, eos: list[int], max_new_tokens: int,
           prefix: list[int] = (), cache=None) -> list[list[int]]:
    """Each prompt's new tokens (greedy), cut at the first end token. A model's own
    `generate_prompts` goes first (a prompting strategy's cached prefix); otherwise `prefix`, the
    tokens every prompt starts with, continues its key/value `cache` (tasks/models/prefix_cache.py;
    none: whole prompts). Decoding's few-row linear layers run flipped (few_rows.py)."""
    with few_row_linear(model):
        custom = getattr(model, "generate_prompts", None)
        out = custom(prompts, pad_id, eos, max_new_tokens) if custom is not None else None
        if out is not None:
            return out
        return greedy_after(model, prompts, list(prefix) if cache is not None else [], cache, pad_id, eos,
                            max_new_tokens)


def prompt_budget(model: nn.Module, max_length: int, max_new_tokens: int) -> int:
    """Tokens a prompt may take. A trained model answers prompts cut as in training
    (model.max_length); a prompting strategy's own prompt (few-shot demonstrations) is longer,
    so it may use the model's context, less the answer."""
    if getattr(model, "prompt_format", None) is None:   # trained; retrieved turns add what they did in training
        return max_length + getattr(model, "extra_prompt_tokens", 0)
    config = getattr(getattr(model, "lm", model), "config", None)
    context = getattr(config, "max_position_embeddings", max_length)
    return max(max_length, context - max_new_tokens)


def prompt_formats(model: nn.Module, fmt: PromptFormat, texts: list[str]) -> list[PromptFormat]:
    """Each text's prompt format: the model's own per input (retrieved demonstrations), else the
    model's one format (a prompting strategy's), else the run's `fmt`."""
    per_input = getattr(model, "prompt_formats", None)
    if per_input is not None:
        return per_input(list(texts), fmt)
    return [getattr(model, "prompt_format", None) or fmt] * len(texts)


def batch_plan(lengths: list[int], rows: int, tokens: int = 0) -> list[np.ndarray]:
    """Each batch's indices: prompts in length order, at most `rows` a batch and at most `tokens`
    prompt tokens (rows x the longest, which padding gives every row; 0 = no limit; a prompt
    longer than `tokens` goes alone). A decoding step reads every weight once whatever the batch,
    and each row's cache too: short prompts batch wide, long ones (demonstrations) narrower."""
    order = np.argsort(lengths, kind="stable")
    plan: list[list[int]] = []
    for i in order:   # ascending: prompt i is the longest of any batch it joins
        if not plan or len(plan[-1]) == rows or (tokens and (len(plan[-1]) + 1) * lengths[i] > tokens):
            plan.append([])
        plan[-1].append(int(i))
    return [np.array(batch) for batch in plan]


def generate_texts(model: nn.Module, tokenizer, fmt: PromptFormat, texts: list[str], max_length: int,
                   max_new_tokens: int, batch_size: int, progress: Callable[[int], None] | None = None,
                   batch_tokens: int = 0, precision: str = "fp32") -> Generated:
    """Outputs for `texts`, in order. Batches follow prompt length (less padding), at most
    `batch_size` prompts and `batch_tokens` prompt tokens each (batch_plan). `progress`: called
    with the number of texts done after each batch (evaluation's `ProgressLines`). `precision`:
    the weights' precision while generating (fp32 | bf16)."""
    ensure_eval(model)   # serving calls this on every pass
    budget = prompt_budget(model, max_length, max_new_tokens)
    start = time.perf_counter()   # building prompts is part of the wait (retrieval: embedding and search)
    formats = prompt_formats(model, fmt, texts)
    prompts = [prompt_ids(tokenizer, f, t, budget) for f, t in zip(formats, texts)]
    prefix = shared_prefix(tokenizer, formats[0]) if len(set(formats)) == 1 else []
    # The prefix's cache once per call, where the model has no cache of its own and allows one.
    own_cache = getattr(model, "generate_prompts", None) is not None
    if own_cache or not (caches_prefix(model) and continues(prompts, prefix)):
        prefix = []
    eos, pad_id = end_ids(tokenizer), tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    new: list[list[int]] = [[] for _ in texts]
    done = 0
    with weights_in(model, precision):
        cache = cache_of(model, prefix) if prefix else None
        for idx in batch_plan([len(p) for p in prompts], batch_size, batch_tokens):
            for i, tokens in zip(idx, greedy(model, [prompts[i] for i in idx], pad_id, eos, max_new_tokens, prefix,
                                             cache)):
                new[i] = tokens
            done += len(idx)
            if progress is not None:
                progress(done)
    seconds = time.perf_counter() - start
    # clean_up_tokenization_spaces would glue quotes and punctuation to the word before (BERT-era
    # detokenising): "deficit 'stabilises'" came out as "deficit'stabilises'".
    return Generated([tokenizer.decode(t, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip()
                      for t in new],
                     np.array([len(t) for t in new]), np.array([len(t) >= max_new_tokens for t in new]), seconds)


def latency(model: nn.Module, tokenizer, fmt: PromptFormat, texts: list[str], max_length: int,
            max_new_tokens: int, precision: str = "fp32") -> dict[str, float]:
    """Per-example generation latency (one request at a time, as a user waits for it) and tokens/s,
    in the precision the version is served in."""
    if not texts:
        return {}
    times, tokens = [], 0
    with weights_in(model, precision):   # converted once, as a served version is when it loads
        for text in texts:
            g = generate_texts(model, tokenizer, fmt, [text], max_length, max_new_tokens, 1, precision=precision)
            times.append(g.seconds * 1000)
            tokens += int(g.new_tokens.sum())
    return {"latency_ms_p50": float(np.percentile(times, 50)), "latency_ms_p95": float(np.percentile(times, 95)),
            "generated_tokens_per_s": tokens / max(sum(times) / 1000, 1e-9)}
