"""Prompting strategies (zero-/few-shot) are scored on every prompt variant, for stability: the
test figures are the mean over variants and their spread; the variant best on validation is
the one saved, so the choice never looks at test."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from tasks.evaluation.cost import size_metrics
from tasks.evaluation.quality import score
from tasks.training.artifact import params_dict


@dataclass(frozen=True)
class VariantScores:
    rows: list[dict]             # per variant: index, params, validation and test accuracy / macro-F1
    chosen: int                  # the variant best on validation
    model: nn.Module             # the chosen variant's model
    params: Any                  # the chosen variant's params
    test_probs: np.ndarray       # the chosen variant's test probabilities
    test_preds: np.ndarray       # examples x variants: every variant's test predictions

    def metrics(self) -> dict[str, float]:
        """Test metrics as the mean over variants; prompt_variant_std is their sample std."""
        accs = np.array([r["test"]["accuracy"] for r in self.rows])
        return {"test_accuracy": float(accs.mean()),
                "test_macro_f1": float(np.mean([r["test"]["macro_f1"] for r in self.rows])),
                "prompt_variant_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
                "chosen_variant": float(self.chosen), **size_metrics(self.model)}


def score_variants(inputs) -> VariantScores:
    """Every prompt variant of `inputs` (a run.StrategyInputs) on validation and test."""
    rows, best, preds = [], None, []
    labels, splits = inputs.labels, inputs.splits
    for i, variant in enumerate(inputs.strategy.variants(inputs.params, inputs.train_frame, labels)):
        model = inputs.strategy.build(inputs.base.path, labels, variant)
        val, test = (score(model, splits[s], len(labels), inputs.pad_id) for s in ("validation", "test"))
        preds.append(test.probs.argmax(1))
        rows.append({"variant": i, "params": params_dict(variant),
                     "validation": {"accuracy": val.accuracy, "macro_f1": val.macro_f1},
                     "test": {"accuracy": test.accuracy, "macro_f1": test.macro_f1}})
        if best is None or val.accuracy > best[0]:
            best = (val.accuracy, i, model, variant, test.probs)
    return VariantScores(rows, best[1], best[2], best[3], best[4], np.stack(preds, axis=1))
