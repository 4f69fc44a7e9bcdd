"""The models stage's Prefect task: resolve and fingerprint the base model, once per run."""
from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.models.base import ResolvedBase, check_base_for_task, load_base
from tasks.tasktypes import DEFAULT


@task(name="load base model", cache_policy=NO_CACHE)
def resolve_base(name: str, root: Path, task: str = DEFAULT) -> ResolvedBase:
    """`model.base` (a packaged name, or a folder relative to the project root) -> the base,
    refused when it cannot do the task (generation needs a causal LM)."""
    base = load_base(name, root)
    check_base_for_task(base.path, name, task)
    return base
