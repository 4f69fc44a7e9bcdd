"""What the comparison report shows, read back from MLflow (so `adaptflow report RUN_ID` can
rebuild it for any past run), with each strategy's paired test against the most accurate."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from tasks.evaluation.review_report import version_review
from tasks.evaluation.task_parts import evaluation_part
from tasks.tasktypes import DEFAULT, catalogue, task_type


@dataclass(frozen=True)
class StrategyRow:
    strategy: str
    run_id: str
    status: str
    metrics: dict[str, float]
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    val_loss: list[tuple[int, float]] = field(default_factory=list)
    reliability: dict = field(default_factory=dict)      # reliability.json of the run
    correct: list[bool] | None = None                    # per test example, for the paired test
    learning_curve: list[tuple[int, float]] = field(default_factory=list)   # (train examples, test accuracy)
    error: str = ""                                      # a failed strategy's error (tag `error`)
    scores: list[float] | None = None                    # generation: per-example ROUGE-L, for the paired test
    samples: list[dict] = field(default_factory=list)    # generation: the first test inputs and outputs
    tuning: dict = field(default_factory=dict)           # tuning.json of a tuned strategy (its study)


@dataclass(frozen=True)
class ReportData:
    parent_run_id: str
    title: str
    tags: dict[str, str]                 # the parent run's lineage tags
    rows: list[StrategyRow]
    validation: dict                     # validation/summary.json
    decision: dict                       # registry/decision.json (may be empty)
    task: str = DEFAULT                  # the parent run's `task` tag
    review: dict = field(default_factory=dict)   # the registered version's review.* tags (human verdict)

    @property
    def quality(self) -> tuple[str, str]:
        """(the metric the report ranks by, its name for people)."""
        return quality(self.task)


def quality(task: str) -> tuple[str, str]:
    """What a task type is judged on first (the report's ranking, plots and paired tests): its
    test key and its name for people."""
    metric = catalogue()[task_type(task).quality]
    return metric.key("test"), metric.label


SAMPLES = 10   # generation: test inputs shown side by side (the same first ones for every strategy)


def collect(client, parent_run_id: str) -> ReportData:
    """Everything the report shows, read back from MLflow."""
    from mlflow.exceptions import MlflowException

    parent = client.get_run(parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                                  order_by=["attributes.start_time ASC"])

    def history(run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]

    def artifact_json(run_id: str, path: str) -> dict:
        try:
            with open(client.download_artifacts(run_id, path)) as fh:
                return json.load(fh)
        except (MlflowException, OSError):
            return {}

    rows = []
    task = parent.data.tags.get("task", DEFAULT)
    outputs_artifact = evaluation_part(task).outputs_artifact
    for r in children:
        preds = artifact_json(r.info.run_id, "test_predictions.json")
        correct = [t == p for t, p in zip(preds["y_true"], preds["y_pred"])] if preds else None
        outputs = artifact_json(r.info.run_id, outputs_artifact).get("examples", []) if outputs_artifact else []
        rows.append(StrategyRow(r.data.tags.get("strategy", r.info.run_name), r.info.run_id, r.info.status,
                                dict(r.data.metrics), history(r.info.run_id, "train_loss"),
                                history(r.info.run_id, "val_loss"), artifact_json(r.info.run_id, "reliability.json"),
                                correct, history(r.info.run_id, "learning_curve_accuracy"),
                                r.data.tags.get("error", ""), [x["rougeL"] for x in outputs] or None,
                                outputs[:SAMPLES], artifact_json(r.info.run_id, "tuning.json")))
    decision = artifact_json(parent_run_id, "registry/decision.json")
    return ReportData(parent_run_id, parent.info.run_name, dict(parent.data.tags), with_paired_tests(rows, task),
                      artifact_json(parent_run_id, "validation/summary.json"), decision, task,
                      version_review(client, decision))


def with_paired_tests(rows: list[StrategyRow], task: str = DEFAULT) -> list[StrategyRow]:
    """Each strategy's p-value against the best one on the same test examples, by the task type's
    paired test (classification: exact McNemar on per-example correctness, `mcnemar_p`;
    generation: paired permutation on per-example ROUGE-L, `paired_p`). Strategies scored on
    another subset (e.g. few_shot's, for classification) are not paired."""
    from dataclasses import replace

    import numpy as np

    key, name, ev = quality(task)[0], task_type(task).paired_metric, evaluation_part(task)
    scored = [r for r in rows if ev.per_example(r) is not None and key in r.metrics]
    if not scored:
        return rows
    best = max(scored, key=lambda r: r.metrics[key])
    out = []
    for r in rows:
        if r in scored and r is not best and len(ev.per_example(r)) == len(ev.per_example(best)):
            p = ev.paired_p(np.array(ev.per_example(r)), np.array(ev.per_example(best)))
            r = replace(r, metrics={**r.metrics, name: p})
        out.append(r)
    return out
