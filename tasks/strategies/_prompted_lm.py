"""A frozen causal LM with a prompt format of its own: what the generation prompting
strategies (zero_shot, few_shot) build. Nothing trains; the saved artifact is the prompt.

Every prompt starts with the same tokens (system message, instruction, few-shot's
demonstration turns): their key/value cache is computed once per model and reused by every
batch (tasks/models/prefix_cache.py)."""
from __future__ import annotations

import copy
import functools
from dataclasses import field
from pathlib import Path

import torch
from torch import nn

from tasks.models.loading import load_frozen
from tasks.models.prefix_cache import cache_of, continues, greedy_after, shared_prefix
from tasks.models.prompts import PromptFormat


@functools.lru_cache(maxsize=1)
def frozen_causal_lm(base_dir: Path) -> nn.Module:
    """One frozen copy per process: every prompt variant prompts the same LM, read from disk once."""
    from transformers import AutoModelForCausalLM

    return load_frozen(AutoModelForCausalLM, base_dir)


class PromptedLM(nn.Module):
    def __init__(self, lm: nn.Module, tokenizer, fmt: PromptFormat, params, cache_prefix: bool):
        super().__init__()
        self.lm = lm
        self.prompt_format = fmt   # generate_texts builds prompts with it instead of the run's
        self.params = params       # what `save` writes
        self._prefix = shared_prefix(tokenizer, fmt) if cache_prefix else []
        self._caches = {}   # per weight dtype: a bf16 pass cannot continue an fp32 cache

    def forward(self, **inputs):
        return self.lm(**inputs)

    def generate(self, **kwargs):
        return self.lm.generate(**kwargs)

    def get_output_embeddings(self) -> nn.Module:
        """The LM's head: validation perplexity runs it on the target positions only
        (tasks/models/lm_head.py), not on every token of the demonstrations before them."""
        return self.lm.get_output_embeddings()

    def _prefix_cache(self):
        dtype = next(self.lm.parameters()).dtype
        if dtype not in self._caches:
            self._caches[dtype] = cache_of(self.lm, self._prefix)
        return self._caches[dtype]

    @torch.no_grad()
    def generate_prompts(self, prompts: list[list[int]], pad_id: int, eos: list[int], max_new_tokens: int
                         ) -> list[list[int]] | None:
        """Greedy new tokens for each prompt after the shared prefix's cache; None when a
        prompt does not start with it (generate_texts then generates plainly)."""
        if not continues(prompts, self._prefix):
            return None
        return greedy_after(self.lm, prompts, self._prefix, self._prefix_cache(), pad_id, eos, max_new_tokens)


@torch.no_grad()
def label_log_likelihoods(lm: nn.Module, rows: list[list[int]], answers: list[list[int]],
                          prefix: list[int] = (), prefix_cache=None) -> torch.Tensor:
    """log p(answer | prefix + row) for every row and answer (rows x answers): how a prompted
    LM classifies. `prefix_cache`: the key/value cache of `prefix`, shared by every row.

    Each row runs once for all answers, left-padded so every row ends in the last column: one
    row of logits there (not the whole sequence's 49k-word softmax per token) gives every
    answer's first token. Only answers longer than one token run again, for their later tokens,
    one batch of rows x answers continuing the rows' cache. Padding is masked and positions
    follow each row's real tokens, so the scores equal running each prompt + answer alone."""
    n_prefix, width = len(prefix), max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    positions = torch.full((len(rows), width), n_prefix, dtype=torch.long)   # padding: masked, any position
    mask = torch.zeros(len(rows), n_prefix + width, dtype=torch.long)
    mask[:, :n_prefix] = 1
    for i, row in enumerate(rows):
        pad = width - len(row)
        ids[i, pad:], mask[i, n_prefix + pad:] = torch.tensor(row, dtype=torch.long), 1
        positions[i, pad:] = torch.arange(n_prefix, n_prefix + len(row))
    cache = None
    if prefix_cache is not None:
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(len(rows))
    device = next(lm.parameters()).device
    out = lm(input_ids=ids.to(device), attention_mask=mask.to(device), past_key_values=cache,
             position_ids=positions.to(device), use_cache=True, logits_to_keep=1)
    first = torch.log_softmax(out.logits[:, -1].float(), -1).cpu()
    scores = torch.stack([first[:, answer[0]] for answer in answers], dim=1)
    if any(len(a) > 1 for a in answers):
        ends = [n_prefix + len(row) for row in rows]
        scores += _later_answer_tokens(lm, out.past_key_values, mask, ends, answers)
    return scores


def _later_answer_tokens(lm: nn.Module, cache, mask: torch.Tensor, ends: list[int], answers: list[list[int]]
                         ) -> torch.Tensor:
    """Per row and answer, the sum of log p(token | prompt, the answer's earlier tokens) over the
    answer's tokens after its first, continuing `cache` for rows x answers at once."""
    n, k = len(ends), len(answers)
    inputs = [a[:-1] for a in answers]   # token t predicts token t + 1
    m = max(map(len, inputs))
    cache.batch_repeat_interleave(k)     # row i, answer j -> i * k + j
    ids = torch.zeros(n * k, m, dtype=torch.long)
    ext = torch.zeros(n * k, m, dtype=torch.long)
    positions = torch.zeros(n * k, m, dtype=torch.long)
    for i in range(n):
        for j, tokens in enumerate(inputs):
            ids[i * k + j, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            ext[i * k + j, : len(tokens)] = 1
            positions[i * k + j] = torch.arange(ends[i], ends[i] + m)
    mask = torch.cat([mask.repeat_interleave(k, dim=0), ext], dim=1)
    device = next(lm.parameters()).device
    logp = torch.log_softmax(lm(input_ids=ids.to(device), attention_mask=mask.to(device), past_key_values=cache,
                                position_ids=positions.to(device)).logits.float(), -1).cpu()
    out = torch.zeros(n, k)
    for j, answer in enumerate(answers):
        for t in range(1, len(answer)):
            out[:, j] += logp[j::k, t - 1, answer[t]]
    return out


def run_prompt_field(setting: str, what: str):
    """A prompting strategy's instruction or system prompt: "" takes the run's (generation.<setting>)."""
    return field(default="", metadata={"help": f"the {what}; \"\": generation.{setting}"})
