"""The run record: the metric names every strategy run logs, so any two runs compare, and what
one finished strategy run leaves behind for the comparison and the registry."""
from __future__ import annotations

from dataclasses import dataclass

from tasks.models.base import ResolvedBase

# The metric names every strategy logs (trained strategies add train_examples_per_s,
# overfit_flag and the loss curves; prompting ones prompt_variant_std; a policy with
# min_confidence adds abstention_rate and answered_accuracy).
METRICS = ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1", "trainable_params", "trainable_fraction",
           "artifact_bytes", "train_seconds", "test_accuracy_ci_low", "test_accuracy_ci_high",
           "test_macro_f1_ci_low", "test_macro_f1_ci_high", "test_ece", "latency_ms_p50",
           "latency_ms_p95", "throughput_examples_per_s", "peak_rss_mb", "policy_violation_rate")
# task: generation -- the names every generation strategy logs instead.
GENERATION_METRICS = ("val_rougeL", "val_chrf", "test_rougeL", "test_rouge1", "test_rouge2", "test_chrf", "test_bleu", "test_exact_match",
                      "test_embedding_similarity", "test_rougeL_ci_low", "test_rougeL_ci_high", "trainable_params",
                      "trainable_fraction", "artifact_bytes", "train_seconds", "latency_ms_p50", "latency_ms_p95",
                      "generated_tokens_per_s", "val_perplexity", "empty_output_share", "repetition_share",
                      "length_cap_share", "peak_rss_mb", "policy_violation_rate")


@dataclass(frozen=True)
class StrategyResult:
    strategy: str
    run_id: str                  # its MLflow child run
    model_uri: str               # its logged model (models:/<id>)
    saves: str                   # adapter | full_model | config_only
    metrics: dict[str, float]
    base: ResolvedBase           # the base it was built on (a strategy may name its own)
    params: dict                 # the effective strategy params (the chosen prompt variant)
