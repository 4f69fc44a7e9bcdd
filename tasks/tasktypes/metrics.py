"""The metric catalogue: each metric declared once. A metric logged per split is one declaration
(`accuracy` logs val_accuracy and test_accuracy); `key(split)` is the logged name.

Adding a metric = one `declare(...)` here + one function that computes it (registered where it
is computed: tasks/evaluation/metric_functions.py). The record (what every run logs), the report's
columns, the CLI table, selection (direction), budgets and docs/metrics.md read this table."""
from __future__ import annotations

from dataclasses import dataclass

CLASSIFICATION, GENERATION = ("classification",), ("generation",)
BOTH = CLASSIFICATION + GENERATION


@dataclass(frozen=True, kw_only=True)
class Metric:
    name: str
    label: str                              # how people read it (report, CLI table)
    fmt: str = "{:.4f}"                     # applied to value * scale
    scale: float = 1.0                      # artifact bytes are shown in MB: 1e-6
    higher_is_better: bool = True
    splits: tuple[str, ...] = ()            # ("val", "test"): logged as val_<name>, test_<name>; (): <name>
    recorded: tuple[str, ...] = ()          # the splits every strategy of its task types logs ("" : unsplit)
    tasks: tuple[str, ...] = BOTH
    selectable: bool = False                # project.select_metric may name it (selection reads val_)
    budget: str | None = None               # project.budgets name that caps it (max_...)
    budget_split: str = ""                  # the split the budget reads ("val": selection never reads test)
    unit: str = ""                          # in budget messages
    doc: str = ""

    def key(self, split: str = "") -> str:
        if split and split not in self.splits:
            raise KeyError(f"metric {self.name} is not logged on split {split!r} (splits: {self.splits or 'none'})")
        return f"{split}_{self.name}" if split else self.name

    def keys(self) -> tuple[str, ...]:
        return tuple(self.key(s) for s in self.splits) or (self.name,)

    def format(self, value: float) -> str:
        return self.fmt.format(value * self.scale)

    def label_for(self, split: str = "") -> str:
        """Its name for people on a split: a validation figure says so (`val macro-F1`)."""
        return f"val {self.label}" if split == "val" else self.label


_CATALOGUE: dict[str, Metric] = {}


def declare(metric: Metric) -> Metric:
    if metric.name in _CATALOGUE:
        raise ValueError(f"metric {metric.name!r} is declared twice")
    if metric.selectable and "val" not in metric.splits:
        raise ValueError(f"metric {metric.name!r}: a selectable metric is logged on validation (splits: val, ...)")
    if metric.budget and not metric.budget.startswith("max_"):
        raise ValueError(f"metric {metric.name!r}: budget names are max_<something>, not {metric.budget!r}")
    _CATALOGUE[metric.name] = metric
    return metric


def catalogue() -> dict[str, Metric]:
    return dict(_CATALOGUE)


def find(key: str) -> tuple[Metric, str] | None:
    """(metric, split) for a logged name: test_macro_f1 -> (macro_f1, "test"); latency_ms_p95 ->
    (latency_ms_p95, ""); None for a name outside the catalogue (a policy rule's share)."""
    for split in ("val", "test"):
        name = key.removeprefix(f"{split}_")
        if name != key and name in _CATALOGUE and split in _CATALOGUE[name].splits:
            return _CATALOGUE[name], split
    return (_CATALOGUE[key], "") if key in _CATALOGUE else None


def lookup(key: str) -> tuple[Metric, str]:
    """`find`, for a name that must be in the catalogue."""
    found = find(key)
    if found is None:
        raise KeyError(f"unknown metric {key!r}; the catalogue: docs/metrics.md (tasks/tasktypes/metrics.py)")
    return found


def recorded(task: str) -> tuple[str, ...]:
    """The logged names every strategy run of `task` records, in catalogue order."""
    return tuple(m.key(s) for m in _CATALOGUE.values() if task in m.tasks for s in m.recorded)


def budgets() -> dict[str, Metric]:
    """Budget name -> the metric it caps."""
    return {m.budget: m for m in _CATALOGUE.values() if m.budget}


def budget_key(budget: str) -> str:
    m = budgets()[budget]
    return m.key(m.budget_split)


# ---- quality, classification ----
declare(Metric(name="accuracy", label="accuracy", splits=("val", "test"), recorded=("val", "test"),
               tasks=CLASSIFICATION, selectable=True, doc="share of examples whose top label is right"))
declare(Metric(name="macro_f1", label="macro-F1", splits=("val", "test"), recorded=("val", "test"),
               tasks=CLASSIFICATION, selectable=True, doc="F1 averaged over labels, each label weighted alike"))
declare(Metric(name="accuracy_ci_low", label="accuracy 95% CI low", splits=("test",), recorded=("test",),
               tasks=CLASSIFICATION, doc="bootstrap 95 % interval of test accuracy, lower end"))
declare(Metric(name="accuracy_ci_high", label="accuracy 95% CI high", splits=("test",), recorded=("test",),
               tasks=CLASSIFICATION, doc="upper end"))
declare(Metric(name="macro_f1_ci_low", label="macro-F1 95% CI low", splits=("test",), recorded=("test",),
               tasks=CLASSIFICATION, doc="bootstrap 95 % interval of test macro-F1, lower end"))
declare(Metric(name="macro_f1_ci_high", label="macro-F1 95% CI high", splits=("test",), recorded=("test",),
               tasks=CLASSIFICATION, doc="upper end"))
declare(Metric(name="ece", label="ECE", fmt="{:.3f}", higher_is_better=False, splits=("val", "test"),
               recorded=("test",), tasks=CLASSIFICATION, budget="max_ece", budget_split="val",
               doc="expected calibration error, 15 equal-width confidence bins"))
declare(Metric(name="brier", label="Brier", fmt="{:.4f}", higher_is_better=False, splits=("val", "test"),
               recorded=("val", "test"), tasks=CLASSIFICATION,
               doc="multi-class Brier score: squared distance of the probabilities from the one-hot truth (0 best, 2 worst)"))
declare(Metric(name="mcnemar_p", label="p vs best", fmt="{:.3g}", tasks=CLASSIFICATION,
               doc="exact McNemar test against the most accurate strategy on the same test examples (report only)"))
declare(Metric(name="abstention_rate", label="abstained", fmt="{:.1%}", higher_is_better=False, splits=("val", "test"),
               tasks=CLASSIFICATION, budget="max_abstention_rate", budget_split="val",
               doc="share of answers under policy.min_confidence (logged when it is set)"))
declare(Metric(name="answered_accuracy", label="acc. answered", tasks=CLASSIFICATION, splits=("val", "test"),
               doc="accuracy on the answers kept by policy.min_confidence"))
# ---- quality, generation ----
declare(Metric(name="rougeL", label="ROUGE-L", splits=("val", "test"), recorded=("val", "test"), tasks=GENERATION,
               selectable=True, doc="ROUGE-L F-measure against the reference (rouge-score, stemmed)"))
declare(Metric(name="chrf", label="chrF", splits=("val", "test"), recorded=("val", "test"), tasks=GENERATION,
               selectable=True, doc="character n-gram F-score (sacrebleu), 0-1"))
declare(Metric(name="rouge1", label="ROUGE-1", splits=("test",), recorded=("test",), tasks=GENERATION))
declare(Metric(name="rouge2", label="ROUGE-2", splits=("test",), recorded=("test",), tasks=GENERATION))
declare(Metric(name="bleu", label="BLEU", splits=("test",), recorded=("test",), tasks=GENERATION,
               doc="corpus BLEU (sacrebleu), 0-1"))
declare(Metric(name="exact_match", label="exact match", fmt="{:.3f}", splits=("test",), recorded=("test",),
               tasks=GENERATION, doc="share of outputs equal to the reference after normalising case and spaces"))
declare(Metric(name="embedding_similarity", label="similarity", fmt="{:.3f}", splits=("test",), recorded=("test",),
               tasks=GENERATION, doc="mean cosine similarity of MiniLM embeddings of output and reference"))
declare(Metric(name="rougeL_ci_low", label="ROUGE-L 95% CI low", splits=("test",), recorded=("test",),
               tasks=GENERATION))
declare(Metric(name="rougeL_ci_high", label="ROUGE-L 95% CI high", splits=("test",), recorded=("test",),
               tasks=GENERATION))
declare(Metric(name="paired_p", label="p vs best", fmt="{:.3g}", tasks=GENERATION,
               doc="paired permutation test of per-example ROUGE-L against the best strategy (report only)"))
declare(Metric(name="perplexity", label="perplexity", fmt="{:.2f}", higher_is_better=False, splits=("val",),
               recorded=("val",), tasks=GENERATION))
declare(Metric(name="empty_output_share", label="empty", fmt="{:.1%}", higher_is_better=False, recorded=("",),
               tasks=GENERATION))
declare(Metric(name="repetition_share", label="repeats", fmt="{:.1%}", higher_is_better=False, recorded=("",),
               tasks=GENERATION, doc="share of outputs that repeat a 3-gram"))
declare(Metric(name="length_cap_share", label="hit cap", fmt="{:.1%}", higher_is_better=False, recorded=("",),
               tasks=GENERATION, doc="share of outputs cut at generation.max_new_tokens"))
# ---- both: variants, cost, risk ----
declare(Metric(name="prompt_variant_std", label="prompt std", higher_is_better=False,
               doc="spread of the selection metric over a prompting strategy's prompt variants"))
declare(Metric(name="trainable_params", label="trainable", fmt="{:,.0f}", higher_is_better=False, recorded=("",)))
declare(Metric(name="trainable_fraction", label="trainable %", fmt="{:.3%}", higher_is_better=False, recorded=("",)))
declare(Metric(name="artifact_bytes", label="artifact MB", fmt="{:.3f}", scale=1e-6, higher_is_better=False,
               recorded=("",), budget="max_artifact_bytes", unit=" bytes",
               doc="bytes a registered version stores (adapter-only where it can be)"))
declare(Metric(name="train_seconds", label="train s", fmt="{:.1f}", higher_is_better=False, recorded=("",)))
declare(Metric(name="latency_ms_p50", label="p50 ms (bs 1)", fmt="{:.1f}", higher_is_better=False, recorded=("",),
               doc="one example at a time (generation: one whole output)"))
declare(Metric(name="latency_ms_p95", label="p95 ms", fmt="{:.1f}", higher_is_better=False, recorded=("",),
               budget="max_latency_ms", unit=" ms"))
declare(Metric(name="throughput_examples_per_s", label="ex/s (bs 32)", fmt="{:.0f}", recorded=("",),
               tasks=CLASSIFICATION))
declare(Metric(name="generated_tokens_per_s", label="tokens/s", fmt="{:.1f}", recorded=("",), tasks=GENERATION))
declare(Metric(name="merged_latency_ms_p50", label="merged p50 ms", fmt="{:.1f}", higher_is_better=False,
               doc="latency after folding a mergeable adapter (LoRA, IA3) into the base"))
declare(Metric(name="peak_rss_mb", label="peak RSS MB", fmt="{:.0f}", higher_is_better=False, recorded=("",)))
declare(Metric(name="forgetting_delta", label="forgetting pts", fmt="{:+.1f}", higher_is_better=False,
               budget="max_forgetting", doc="probe accuracy lost on a held-out task, in points"))
declare(Metric(name="overfit_flag", label="overfit?", fmt="{:.0f}", higher_is_better=False))
declare(Metric(name="policy_violation_rate", label="policy blocked", fmt="{:.1%}", higher_is_better=False,
               splits=("val", "test"), recorded=("",), budget="max_policy_violation_rate", budget_split="val",
               doc="share of outputs the output policy blocks (unsplit: the test figure)"))
declare(Metric(name="retrieval_ms_p50", label="retrieval p50 ms", fmt="{:.1f}", higher_is_better=False))
declare(Metric(name="retrieval_extra_prompt_tokens", label="retrieved tokens", fmt="{:.0f}", higher_is_better=False))
# ---- cost of ownership (params `cost:`; tasks/evaluation/ownership.py, docs/cost.md) ----
declare(Metric(name="model_params", label="model params", fmt="{:,.0f}", higher_is_better=False,
               doc="every weight of the model that answers (base + adapter + head): what a serving copy holds"))
declare(Metric(name="tenant_shares_base", label="shares base", fmt="{:.0f}",
               doc="1: each tenant's version sits on one shared base in memory (adapters, prompts); 0: a whole copy each"))
declare(Metric(name="tenant_mixes", label="mixes", fmt="{:.0f}",
               doc="1: requests for different tenants' versions share one forward pass (LoRA mixed batches, prompts)"))
declare(Metric(name="switch_ms", label="switch ms", fmt="{:.1f}", higher_is_better=False,
               doc="switching a shared base to another version, 2 versions held (serving pays it per batch)"))
declare(Metric(name="switch_ms_per_version", label="switch ms/version", fmt="{:.2f}", higher_is_better=False,
               doc="what each further version held on the base adds to a switch"))
declare(Metric(name="mixed_ms_per_version", label="mixed ms/version", fmt="{:.2f}", higher_is_better=False,
               doc="what each further distinct version in a mixed-batch forward pass adds to it"))
declare(Metric(name="monthly_cost", label="USD/month", fmt="{:,.2f}", higher_is_better=False, budget="max_monthly_cost",
               unit=" USD", doc="serving (instances for the peak within the p95 objective) + storage, per month, for params cost:"))
declare(Metric(name="one_time_cost", label="one-time USD", fmt="{:,.2f}", higher_is_better=False,
               doc="training and tuning every tenant's version at cost.train_price_per_hour"))
declare(Metric(name="horizon_cost", label="horizon USD", fmt="{:,.2f}", higher_is_better=False,
               doc="one-time cost + cost.horizon_months of monthly cost"))
declare(Metric(name="serving_instances", label="instances", fmt="{:.0f}", higher_is_better=False,
               doc="serving instances the deployment needs (0: it cannot meet it)"))
declare(Metric(name="serving_memory_mb", label="MB/instance", fmt="{:,.0f}", higher_is_better=False,
               doc="memory one instance holds: process, base(s) and the tenants' versions"))
declare(Metric(name="serving_capacity_rps", label="req/s/instance", fmt="{:.1f}",
               doc="requests a second one instance carries within the p95 objective"))
