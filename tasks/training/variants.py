"""Prompting strategies (zero-/few-shot) are scored on every prompt variant, for stability: the
test figures are the mean over variants and their spread; the variant best on validation is
the one saved, so the choice never looks at test."""
from __future__ import annotations

import numpy as np
import torch

from tasks.artifacts.manifest import params_dict
from tasks.evaluation.predict import predict_rows, probabilities
from tasks.evaluation.quality import Quality, quality, score
from tasks.evaluation.statistics import reliability
from tasks.training.strategy_run import StrategyInputs, VariantScores


def score_variants(inputs: StrategyInputs) -> VariantScores:
    """Every prompt variant of `inputs` on validation and test."""
    rows, best, preds, shared = [], None, [], {}
    labels, splits = inputs.labels, inputs.splits
    for i, variant in enumerate(inputs.strategy.variants(inputs.params, inputs.train_frame, labels)):
        model = inputs.strategy.build(inputs.base.path, inputs.head, variant)
        val, test = (score_variant(model, inputs, s, shared) for s in ("validation", "test"))
        preds.append(test.probs.argmax(1))
        rows.append({"variant": i, "params": params_dict(variant),
                     "validation": {"accuracy": val.accuracy, "macro_f1": val.macro_f1,
                                    "ece": reliability(val.probs, splits["validation"].labels).ece},
                     "test": {"accuracy": test.accuracy, "macro_f1": test.macro_f1}})
        if best is None or val.accuracy > best[0]:
            best = (val.accuracy, i, model, variant, test.probs, val.probs)
    return VariantScores(rows, best[1], best[2], best[3], best[4], np.stack(preds, axis=1), best[5])


def score_variant(model, inputs: StrategyInputs, split: str, shared: dict[str, np.ndarray]) -> Quality:
    """A variant's scores on a split. A model whose variants differ only after a shared feature
    (zero_shot: `text_features`, the text embedding; the variants change the label prototypes)
    computes that feature once per split for all variants: 3 variants x 2,844 MiniLM embeddings
    took 32 s of the default run's zero_shot (AMD EPYC), one variant's worth is 11 s."""
    data, k = inputs.splits[split], len(inputs.labels)
    if not hasattr(model, "text_features"):
        return score(model, data, k, inputs.pad_id)
    if split not in shared:
        shared[split] = predict_rows(model, data, inputs.pad_id, lambda batch: model.text_features(**batch).cpu().numpy())
    return quality(probabilities(model.logits_from_features(torch.from_numpy(shared[split]))), data.labels, k)
