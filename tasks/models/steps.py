"""The models stage's Prefect task: resolve and fingerprint the base model, once per run."""
from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.models.base import ResolvedBase, load_base


@task(name="load base model", cache_policy=NO_CACHE)
def resolve_base(name: str, root: Path) -> ResolvedBase:
    """`model.base` (a packaged name, or a folder relative to the project root) -> the base."""
    return load_base(name, root)
