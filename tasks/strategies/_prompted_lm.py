"""A frozen causal LM with a prompt format of its own: what the generation prompting
strategies (zero_shot, few_shot) build; and classification's few-shot classifiers (few_shot,
retrieval_few_shot), which score each label's verbalizer. Nothing trains; the saved artifact is
the prompt.

Every prompt starts with the same tokens (system message, instruction, few-shot's
demonstration turns): their key/value cache is computed once per model and reused by every
batch (tasks/models/prefix_cache.py)."""
from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from tasks.models.loading import load_frozen
from tasks.models.prefix_cache import cache_of, continues, greedy_after, shared_prefix
from tasks.models.prompts import PromptFormat
from tasks.strategies._templates import fill
from tasks.strategies.retrieval_index import cost_metrics, generation_formats, timed_neighbours

if TYPE_CHECKING:
    from tasks.models.retrieval import RetrievalIndex


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


class FewShotClassifier(nn.Module):
    """forward(input_ids, attention_mask) -> per-label log-likelihoods as logits.

    input_ids are the example's own tokens (from this LM's tokenizer, right-padded)."""

    def __init__(self, lm: nn.Module, tokenizer, labels: list[str], params: Any):
        super().__init__()
        self.lm, self.params = lm, params   # frozen and in eval mode (frozen_causal_lm)
        t = params.templates[params.template]
        head, tail = t["example"].split("{text}")
        demos = "".join(fill(t["example"], text=d["text"]) + fill(t["answer"], label=params.verbalizers[d["label"]])
                        + t["separator"] for d in params.demonstrations)
        self.bos = tokenizer.bos_token_id

        def ids(text: str) -> list[int]:
            out = tokenizer(text, add_special_tokens=False)["input_ids"]
            return out[1:] if out and out[0] == self.bos else out   # SmolLM2 prepends bos regardless

        self.prefix = ids(t["instruction"] + demos + head)
        self.tail = ids(tail)
        self.answers = [ids(fill(t["answer"], label=params.verbalizers[label])) for label in labels]
        self.content_free = [ids(text) for text in params.content_free]
        self._cache, self._bias = None, None

    def _own_tokens(self, input_ids, attention_mask) -> list[list[int]]:
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            ids = ids[: sum(mask)]
            rows.append(ids[1:] if ids and ids[0] == self.bos else ids)   # the tokenizer prepends bos
        return rows

    def _prefix_cache(self):
        if self._cache is None:
            with torch.no_grad():
                self._cache = self.lm(torch.tensor([self.prefix]), use_cache=True).past_key_values
        return self._cache

    @torch.no_grad()
    def score(self, rows: list[list[int]]) -> torch.Tensor:
        """log p(answer | prefix, example) for every row and label, reusing the demonstrations'
        cache (equal to `score_uncached`; tasks/strategies/_prompted_lm.py: label_log_likelihoods)."""
        return label_log_likelihoods(self.lm, [r + self.tail for r in rows], self.answers, self.prefix,
                                     self._prefix_cache())

    @torch.no_grad()
    def score_uncached(self, rows: list[list[int]]) -> torch.Tensor:
        """The same scores with the whole prompt run for every example and label."""
        out = torch.zeros(len(rows), len(self.answers))
        for i, r in enumerate(rows):
            for j, answer in enumerate(self.answers):
                seq = self.prefix + r + self.tail + answer
                logp = torch.log_softmax(self.lm(torch.tensor([seq])).logits.float(), -1)[0]
                start = len(seq) - len(answer)
                out[i, j] = sum(logp[start + t - 1, tok] for t, tok in enumerate(answer))
        return out

    def label_bias(self) -> torch.Tensor:
        """log of each label's mean probability after the content-free inputs (0 if not calibrating)."""
        if self._bias is None:
            if self.params.calibrate and self.content_free:
                self._bias = torch.log(torch.softmax(self.score(self.content_free), -1).mean(0))
            else:
                self._bias = torch.zeros(len(self.answers))
        return self._bias

    def forward(self, input_ids, attention_mask, **_) -> SequenceClassifierOutput:
        scores = self.score(self._own_tokens(input_ids, attention_mask))
        return SequenceClassifierOutput(logits=scores - self.label_bias())


class RetrievalFewShotClassifier(nn.Module):
    """forward(input_ids, attention_mask) -> per-label log-likelihoods as logits; input_ids are the
    example's own tokens from this LM's tokenizer (decoded back to text to query the index)."""

    def __init__(self, lm: nn.Module, tokenizer, labels: list[str], params: Any,
                 index: RetrievalIndex):
        super().__init__()
        self.lm, self.tokenizer, self.params, self.index = lm, tokenizer, params, index
        self.t = params.templates[params.template]
        self.bos = tokenizer.bos_token_id
        self.answers = [self._ids(fill(self.t["answer"], label=params.verbalizers[label])) for label in labels]
        self.single_query_ms: list[float] = []

    def _ids(self, text: str) -> list[int]:
        out = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return out[1:] if out and out[0] == self.bos else out   # SmolLM2 prepends bos regardless

    def prompts(self, texts: list[str]) -> list[str]:
        """Each example's prompt up to where the label's verbalizer goes."""
        t, p = self.t, self.params
        rows = timed_neighbours(self.index, texts, p.k, self.single_query_ms)
        demo = lambda text, label: (fill(t["example"], text=text[: p.demo_max_chars])
                                    + fill(t["answer"], label=p.verbalizers[label]) + t["separator"])
        return [t["instruction"] + "".join(demo(x, y) for x, y in row) + fill(t["example"], text=text)
                for text, row in zip(texts, rows)]

    def score(self, prompts: list[list[int]]) -> torch.Tensor:
        """log p(answer | prompt) for every prompt and label (each prompt runs once for all labels)."""
        return label_log_likelihoods(self.lm, prompts, self.answers)

    def forward(self, input_ids, attention_mask, **_) -> SequenceClassifierOutput:
        texts = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            own = ids[: sum(mask)]
            texts.append(self.tokenizer.decode(own[1:] if own and own[0] == self.bos else own))
        return SequenceClassifierOutput(logits=self.score([self._ids(p) for p in self.prompts(texts)]))

    def retrieval_metrics(self, texts: list[str], tokenizer=None, fmt=None) -> dict[str, float]:
        """(tokenizer and fmt: this model's own are used.)"""
        plain = [len(self._ids(self.t["instruction"] + fill(self.t["example"], text=x))) for x in texts]
        extra = [len(self._ids(p)) - n for p, n in zip(self.prompts(texts), plain)]
        return cost_metrics(self.index, self.single_query_ms, extra)


class RetrievalPromptedLM(PromptedLM):
    """A frozen LM whose prompt format depends on the input: `prompt_formats(texts)`."""

    def __init__(self, lm: nn.Module, tokenizer, params: Any, index: RetrievalIndex):
        super().__init__(lm, tokenizer, PromptFormat(params.system_prompt, params.instruction), params,
                         cache_prefix=False)
        self.index, self.tokenizer = index, tokenizer
        self.single_query_ms: list[float] = []   # one input at a time, as a user's request waits for it

    def prompt_formats(self, texts: list[str], fmt: PromptFormat | None = None) -> list[PromptFormat]:
        """Each input's prompt (`fmt`, the run's, is not used: this strategy's params carry its own)."""
        p = self.params
        rows = timed_neighbours(self.index, texts, p.k, self.single_query_ms)
        return generation_formats(rows, PromptFormat(p.system_prompt, p.instruction), p.demo_max_chars)

    def retrieval_metrics(self, texts: list[str], tokenizer=None, fmt=None) -> dict[str, float]:
        """(tokenizer and fmt: this model's own are used.)"""
        from tasks.models.prompts import render

        plain = PromptFormat(self.params.system_prompt, self.params.instruction)
        n = lambda fmt, text: len(self.tokenizer(render(self.tokenizer, fmt, text), add_special_tokens=False)["input_ids"])
        extra = [n(f, t) - n(plain, t) for f, t in zip(self.prompt_formats(texts), texts)]
        return cost_metrics(self.index, self.single_query_ms, extra)
