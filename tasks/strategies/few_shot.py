"""Few-shot prompting of a causal LM (SmolLM2-135M-Instruct by default): no training.

The prompt is a named, versioned template: an instruction, k demonstrations drawn
reproducibly from train, then the example. Each label is scored by the log-likelihood of its
verbalizer after the example; the highest wins. The demonstrations are the same for every
example, so their key/value cache is computed once and reused: scoring an example costs only
its own tokens (`score_uncached` is the reference it must equal).
"""
from __future__ import annotations

import json
import string
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from tasks.models.loading import load_tokenizer
from tasks.models.packaged import SMOLLM2
from tasks.models.heads import Head
from tasks.strategies._prompted_lm import frozen_causal_lm, label_log_likelihoods
from tasks.strategies.registry import Strategy, register

CONFIG_FILE = "few_shot.json"

DEFAULT_TEMPLATES = {
    # name@version: changing a template's text means a new version, never an edit in place.
    "review-sentiment@v1": {
        "instruction": "Classify the sentiment of each movie review as positive or negative.\n\n",
        "example": "Review: {text}\nSentiment:",
        "answer": " {label}",
        "separator": "\n\n",
    },
    "critic-verdict@v1": {
        "instruction": "Here are film critics' snippets, each followed by whether the critic liked the film.\n\n",
        "example": "Snippet: {text}\nThe critic's verdict:",
        "answer": " {label}",
        "separator": "\n\n",
    },
}


TEMPLATE_PARTS = {"instruction": (), "example": ("{text}",), "answer": ("{label}",), "separator": ()}
# The parts filled in with `fill` (instruction and separator are used as written).
FILLED = {"example": "text", "answer": "label"}


def template_problem(name: str, template: dict[str, str]) -> str | None:
    """Why a template cannot be used (None: it can). A filled part may hold only its own plain
    placeholder: a template stored with a version is data, and str.format would honour a format
    spec (`{text:>2000000000}` asks for 2 GB), a conversion or an attribute (`{text.__class__}`)."""
    for part, allowed in FILLED.items():
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template[part]) if f is not None]
        except ValueError as exc:   # a lone { or }
            return f"template {name!r}: {part} is not a valid template ({exc}); write a brace as {{{{ or }}}}"
        bad = [f"{{{f}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}" for f, spec, conv in fields
               if f != allowed or spec or conv]
        if bad:
            return (f"template {name!r}: {part} may hold only the plain placeholder {{{allowed}}}, not "
                    f"{', '.join(bad[:3])} (no format specs, conversions, indexes or other fields)")
    return None


def fill(template: str, **values: str) -> str:
    """`template` with each plain `{field}` replaced (`{{` and `}}` are braces), never through
    str.format (see template_problem)."""
    return "".join(literal + (values[f] if f is not None else "") for literal, f, _, _ in string.Formatter().parse(template))


@dataclass(frozen=True)
class FewShotParams:
    base: str = field(default=SMOLLM2, metadata={
        "help": "the causal LM that is prompted (its own base, whatever model.base is)"})
    templates: dict[str, dict[str, str]] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES), metadata={
        "help": "name@version -> {instruction, example, answer, separator}; {text} is the example, {label} the "
                "verbalizer; change a text = add a new version. The chosen one is saved with the version and "
                "logged with the run"})
    template: str = field(default="review-sentiment@v1", metadata={"help": "the template used (one of templates)"})
    k: int = field(default=4, metadata={"help": "demonstrations, drawn from train balanced across labels"})
    demo_seed: int = field(default=13, metadata={"help": "seed of the demonstrations' draw"})
    verbalizers: dict[str, str] = field(default_factory=lambda: {"negative": "negative", "positive": "positive"},
                                        metadata={"help": "label -> the answer text scored after each example"})
    demonstrations: list[dict[str, str]] = field(default_factory=list, metadata={
        "help": "filled from the train split by the run (and saved): the prompt is fully reproducible; not a "
                "setting"})
    variants: list[dict] = field(default_factory=lambda: [{"demo_seed": 14}, {"demo_seed": 15},
                                                          {"template": "critic-verdict@v1"}], metadata={
        "help": "prompt stability: each entry overrides template, k, demo_seed or verbalizers for one more "
                "variant; every variant is evaluated, the best on validation is saved"})
    max_test_examples: int = field(default=300, metadata={
        "help": "test examples scored (the same ones for every variant): a 135M LM on 2 cores scores about 10 "
                "examples/s"})
    calibrate: bool = field(default=True, metadata={
        "help": "contextual calibration (Zhao et al., 2021): divide each label's probability by its mean "
                "probability after content-free inputs, removing the prompt's bias towards one label "
                "(uncalibrated, 3 of the 4 default prompts predicted \"positive\" for most reviews: test "
                "accuracy 0.58-0.65 but macro-F1 0.37-0.64)"})
    content_free: list[str] = field(default_factory=lambda: ["N/A", "", "[MASK]"], metadata={
        "help": "the content-free inputs calibration scores"})

    def __post_init__(self):
        for name, t in self.templates.items():
            if "@" not in name:
                raise ValueError(f"template name {name!r} needs a version: name@v1")
            if set(t) != set(TEMPLATE_PARTS):
                raise ValueError(f"template {name!r} must have exactly {', '.join(TEMPLATE_PARTS)}")
            for part, fields_needed in TEMPLATE_PARTS.items():
                for f in fields_needed:
                    if t[part].count(f) != 1:
                        raise ValueError(f"template {name!r}: {part} must contain {f} once")
            problem = template_problem(name, t)
            if problem:
                raise ValueError(problem)
        if self.template not in self.templates:
            raise ValueError(f"template must be one of {', '.join(self.templates)}, got {self.template!r}")
        if self.k < 0:
            raise ValueError(f"k must be >= 0, got {self.k}")
        if not self.verbalizers or any(not v.strip() for v in self.verbalizers.values()):
            raise ValueError("verbalizers must map every label to non-empty text")
        for v in self.variants:
            unknown = set(v) - {"template", "k", "demo_seed", "verbalizers"}
            if v.get("template", self.template) not in self.templates:
                raise ValueError(f"variant {v}: unknown template; known: {', '.join(self.templates)}")
            if unknown:
                raise ValueError(f"a variant may override template, k, demo_seed or verbalizers, not {sorted(unknown)}")


def draw_demonstrations(train: pd.DataFrame, labels: list[str], k: int, seed: int) -> list[dict[str, str]]:
    """k examples, as balanced across labels as k allows, in a seeded random order."""
    rng = np.random.default_rng(seed)
    per_label = [train[train["label"] == label] for label in labels]
    picks = []
    for i in range(k):
        pool = per_label[i % len(labels)]
        picks.append(pool.iloc[int(rng.integers(len(pool)))])
    order = rng.permutation(len(picks))
    return [{"text": str(picks[i]["text"]), "label": str(picks[i]["label"])} for i in order]


def variants(params: FewShotParams, train: pd.DataFrame, labels: list[str]) -> list[FewShotParams]:
    out = []
    for override in [{}, *params.variants]:
        v = replace(params, **override, variants=[])
        v = replace(v, templates={v.template: v.templates[v.template]})   # only what this variant uses
        out.append(replace(v, demonstrations=draw_demonstrations(train, labels, v.k, v.demo_seed)))
    return out


class FewShotClassifier(nn.Module):
    """forward(input_ids, attention_mask) -> per-label log-likelihoods as logits.

    input_ids are the example's own tokens (from this LM's tokenizer, right-padded)."""

    def __init__(self, lm: nn.Module, tokenizer, labels: list[str], params: FewShotParams):
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


def build(base_dir: Path, head: Head, params: FewShotParams) -> nn.Module:
    labels = list(head.labels)
    missing = [label for label in labels if label not in params.verbalizers]
    if missing:
        raise ValueError(f"strategies.few_shot.verbalizers has no entry for label(s) {', '.join(missing)}")
    return FewShotClassifier(frozen_causal_lm(Path(base_dir)), load_tokenizer(base_dir), labels, params)


def save(model: nn.Module, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    p = model.params
    (out_dir / CONFIG_FILE).write_text(json.dumps(
        {"template": p.template, "templates": {p.template: p.templates[p.template]}, "k": p.k,
         "demo_seed": p.demo_seed, "verbalizers": p.verbalizers, "demonstrations": p.demonstrations,
         "calibrate": p.calibrate, "content_free": p.content_free},
        indent=2))


def load(base_dir: Path, saved_dir: Path, head: Head, params: FewShotParams) -> nn.Module:
    saved = json.loads((saved_dir / CONFIG_FILE).read_text())
    saved.setdefault("calibrate", False)   # prompts saved before calibration existed predicted without it
    return build(base_dir, head, replace(params, **saved, variants=[]))


register(Strategy(
    name="few_shot",
    summary="in-context prompting of SmolLM2 (k demonstrations, verbalizer log-likelihood); saves the prompt",
    params_cls=FewShotParams, trains=False, saves="config_only",
    build=build, save=save, load=load, library="none", variants=variants, base_kind="causal_lm",
))
