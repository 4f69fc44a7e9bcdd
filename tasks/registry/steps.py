"""The registry stage's Prefect task: register the run's candidate as a new version, and say
whether it earned @challenger."""
from __future__ import annotations

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.evaluation.record import StrategyResult
from tasks.models.subset import subset_indices
from tasks.registry.versions import Registration, ScoringSet, register_best
from tasks.tasktypes import task_type
from tasks.tracking import log_json
from tasks.training.context import RunContext


def scoring_set(ctx: RunContext) -> ScoringSet:
    """The validation examples every strategy was scored on (the same subset as training's):
    what the candidate and the alias holders are compared on. Test only reports."""
    frame, labels = ctx.frames["validation"], ctx.settings.validation.labels
    keep = subset_indices(len(frame), ctx.settings.train.max_eval_examples, ctx.settings.train.seed)
    texts, md5 = frame["text"].iloc[keep].tolist(), ctx.data.split_hashes["validation"]
    tt = task_type(ctx.settings.task)
    if not tt.has_labels:   # the references the outputs are scored against
        return ScoringSet(md5, texts, np.zeros(0, dtype=np.int64), [],
                          frame[tt.answer_column].iloc[keep].tolist(), tt.name)
    return ScoringSet(md5, texts, frame[tt.answer_column].iloc[keep].map({n: i for i, n in enumerate(labels)}).to_numpy(),
                      labels, task=tt.name)


@task(name="register candidate", cache_policy=NO_CACHE)
def register_candidate(ctx: RunContext, results: list[StrategyResult]) -> Registration:
    p, task = ctx.settings.project, ctx.settings.task
    reg = register_best(p.registered_model, p.selection_key(task), p.min_improvement, p.budgets, results,
                        {**ctx.tags, "validation": "passed", "parent_run_id": ctx.parent_run_id},
                        scoring_set(ctx), p.recommend_tolerance_points)
    log_json(ctx.parent_run_id, {"model": reg.model_name, "version": reg.version, "strategy": reg.strategy,
                                 "set_challenger": reg.decision.set_challenger,
                                 "reasons": reg.decision.reasons}, "registry/decision.json")
    logger = get_run_logger()
    logger.info("registered %s v%s (%s, %s=%.4f)", reg.model_name, reg.version, reg.strategy,
                reg.metric_name, reg.metric)
    for reason in reg.decision.reasons:
        logger.info("@challenger: %s", reason)
    return reg
