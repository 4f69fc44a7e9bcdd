"""What evaluation does differently per task type, registered once per type (the way strategies
register): what a strategy's per-example test results are, the paired test that compares two
strategies on them, and the report's note. Everything else in evaluation asks `evaluation_part`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tasks.tasktypes import part, register_part

STAGE = "evaluation"


@dataclass(frozen=True, kw_only=True)
class EvaluationPart:
    # A report row's (report_data.StrategyRow) per-example test results of the saved model
    # (correctness, or ROUGE-L): what paired tests read.
    per_example: Callable[[Any], list | None]
    # p-value of b against a on the same examples (arrays of per-example results).
    paired_p: Callable[[np.ndarray, np.ndarray], float]
    test_name: str                   # the paired test's name for people
    note: str                        # the report's note over the comparison table
    outputs_artifact: str | None     # a run's per-example outputs (generation: test_outputs.json)


def evaluation_part(task: str) -> EvaluationPart:
    return part(task, STAGE)


def _mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    from tasks.evaluation.statistics import mcnemar

    return mcnemar(a, b).p_value


def _permutation_p(a: np.ndarray, b: np.ndarray) -> float:
    from tasks.evaluation.text_metrics import paired_permutation_p

    return paired_permutation_p(a, b)


register_part("classification", STAGE, EvaluationPart(
    per_example=lambda row: row.correct, paired_p=_mcnemar_p, test_name="exact McNemar",
    note=('Accuracy and macro-F1 with bootstrap 95 % intervals; "p vs best": exact McNemar test '
          'against the most accurate strategy on the same test examples (small p: the difference is real).'),
    outputs_artifact=None))
register_part("generation", STAGE, EvaluationPart(
    per_example=lambda row: row.scores, paired_p=_permutation_p, test_name="paired permutation, per-example ROUGE-L",
    note=('ROUGE-L and chrF with bootstrap 95 % intervals (rouge-score, sacrebleu; computed offline); '
          '"p vs best": paired permutation test on per-example ROUGE-L against the best strategy; '
          '"similarity": cosine of MiniLM embeddings of output and reference; latency: one input at a '
          'time, greedy; "hit cap": outputs cut by generation.max_new_tokens.'),
    outputs_artifact="test_outputs.json"))
