"""Measurements beyond the test split, taken after a strategy has trained: forgetting on a
second task, and the speed of the merged model for adapters that fold into the base."""
from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from tasks.base_model import BaseModel
from tasks.config import EvaluationSettings
from tasks.cost import measure_speed
from tasks.encoding import Encoded, collate
from tasks.forgetting import measure_forgetting


def forgetting_metrics(model: nn.Module, trains: bool, base: BaseModel, labels: list[str], tokenizer,
                       ev: EvaluationSettings, seed: int) -> dict[str, float]:
    """forgetting_delta and the two probe accuracies; a strategy that changes no weight has
    the base's features, so its delta is 0 by definition (not measured)."""
    if not ev.measures_forgetting:
        return {}
    if not trains:
        return {"forgetting_delta": 0.0}
    result = measure_forgetting(model, base.path, base.fingerprint, labels, tokenizer,
                                ev.forgetting_train_examples, ev.forgetting_test_examples,
                                ev.forgetting_max_length, seed)
    return result.metrics()


@torch.no_grad()
def merged_speed_metrics(model: nn.Module, merge, data: Encoded, pad_id: int) -> dict[str, float]:
    """Latency and throughput of the merged copy, measured exactly like the adapter's, and the
    largest logit difference between the two on a batch of test examples (should be ~1e-6)."""
    merged = merge(model)
    batch = collate(data.input_ids[:32], pad_id)
    diff = (merged(**batch).logits - model(**batch).logits).abs().max().item()
    speed = {f"merged_{k}": v for k, v in asdict(measure_speed(merged, data, pad_id)).items()}
    return speed | {"merged_max_abs_logit_diff": diff}
