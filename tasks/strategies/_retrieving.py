"""The model of a strategy with retrieval (tasks/strategies/with_retrieval.py): the trained model,
its index, and how its inputs take their neighbours. Apart from with_retrieval, which settings
read, because it is a torch module."""
from __future__ import annotations

from torch import nn

from tasks.models.prompts import PromptFormat
from tasks.models.retrieval import RetrievalIndex
from tasks.strategies.retrieval_index import classification_context, cost_metrics, generation_formats, timed_neighbours


class Retrieving(nn.Module):
    """A trained model whose inputs carry their neighbours. forward / generate are the inner
    model's; `augment_texts` (classification) and `prompt_formats` (generation) are what the
    evaluation and serving code call, by name, to build inputs the way training did."""

    def __init__(self, inner: nn.Module, index: RetrievalIndex, params):
        super().__init__()
        self.inner, self.index, self.params = inner, index, params
        self.extra_prompt_tokens = params.context_tokens   # generate_texts' prompt budget, as in training
        self.single_query_ms: list[float] = []

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)

    def generate(self, **kwargs):
        return self.inner.generate(**kwargs)

    def get_output_embeddings(self) -> nn.Module | None:
        """The inner model's LM head, which the training loss narrows (tasks/models/lm_head.py)."""
        return self.inner.get_output_embeddings()

    def get_base_model(self) -> nn.Module:
        """The transformers model under any adapter wrapper (train.gradient_checkpointing)."""
        return self.inner.get_base_model() if hasattr(self.inner, "get_base_model") else self.inner

    def augment_texts(self, texts: list[str]) -> tuple[list[str], int]:
        """(each text's neighbour segment, the tokens it may add)."""
        rows = timed_neighbours(self.index, texts, self.params.k, self.single_query_ms)
        return classification_context(rows, self.params.demo_max_chars), self.params.context_tokens

    def prompt_formats(self, texts: list[str], fmt: PromptFormat) -> list[PromptFormat]:
        rows = timed_neighbours(self.index, texts, self.params.k, self.single_query_ms)
        return generation_formats(rows, fmt, self.params.demo_max_chars)

    def retrieval_metrics(self, texts: list[str], tokenizer, fmt: PromptFormat | None = None) -> dict[str, float]:
        """Index size and build time, one query's latency (50 queries one at a time, as serving
        sees them) and the tokens the neighbours add (capped by context_tokens, as the inputs are)."""
        from tasks.models.prompts import render

        for text in texts[:50]:
            timed_neighbours(self.index, [text], self.params.k, self.single_query_ms)
        rows, cap = self.index.neighbours(list(texts), self.params.k), self.params.context_tokens
        n = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if fmt is None:   # classification: the second segment and its separator
            extra = [min(n(c) + 1, cap) for c in classification_context(rows, self.params.demo_max_chars)]
        else:
            extra = [min(n(render(tokenizer, f, t)) - n(render(tokenizer, fmt, t)), cap)
                     for f, t in zip(generation_formats(rows, fmt, self.params.demo_max_chars), texts)]
        return cost_metrics(self.index, self.single_query_ms, extra)
