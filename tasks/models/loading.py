"""Loading a base model's parts: its tokenizer, and the base with a fresh classification head."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@contextmanager
def quiet_transformers():
    """Silence transformers' warnings inside the block only: a new head ("newly initialized"),
    an unused pooler ("were not used") or an over-long text being counted is what we asked
    for, not news."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def load_classifier(path: Path, labels: list[str]):
    """The base with a fresh classification head over `labels` (seeded by the caller)."""
    from transformers import AutoModelForSequenceClassification

    with quiet_transformers():
        return AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
        )


def load_frozen(auto_class, path: Path):
    """A model that is only ever read (prompting baselines): loaded quietly, in eval mode, with
    every parameter frozen."""
    with quiet_transformers():
        model = auto_class.from_pretrained(path).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_causal_lm(path: Path):
    """A causal LM with its language-model head (task: generation)."""
    from transformers import AutoModelForCausalLM

    with quiet_transformers():
        return AutoModelForCausalLM.from_pretrained(path)
