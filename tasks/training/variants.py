"""Prompting strategies (zero-/few-shot) are scored on every prompt variant, for stability: the
test figures are the mean over variants and their spread; the variant best on validation is
the one saved, so the choice never looks at test."""
from __future__ import annotations

import numpy as np

from tasks.evaluation.quality import score
from tasks.evaluation.statistics import reliability
from tasks.training.artifact import params_dict
from tasks.training.strategy_run import StrategyInputs, VariantScores


def score_variants(inputs: StrategyInputs) -> VariantScores:
    """Every prompt variant of `inputs` on validation and test."""
    rows, best, preds = [], None, []
    labels, splits = inputs.labels, inputs.splits
    for i, variant in enumerate(inputs.strategy.variants(inputs.params, inputs.train_frame, labels)):
        model = inputs.strategy.build(inputs.base.path, inputs.head, variant)
        val, test = (score(model, splits[s], len(labels), inputs.pad_id) for s in ("validation", "test"))
        preds.append(test.probs.argmax(1))
        rows.append({"variant": i, "params": params_dict(variant),
                     "validation": {"accuracy": val.accuracy, "macro_f1": val.macro_f1,
                                    "ece": reliability(val.probs, splits["validation"].labels).ece},
                     "test": {"accuracy": test.accuracy, "macro_f1": test.macro_f1}})
        if best is None or val.accuracy > best[0]:
            best = (val.accuracy, i, model, variant, test.probs, val.probs)
    return VariantScores(rows, best[1], best[2], best[3], best[4], np.stack(preds, axis=1), best[5])
