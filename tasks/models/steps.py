"""The models stage's Prefect task: resolve and fingerprint the base model, once per run."""
from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import Settings
from tasks.models.base import ResolvedBase, load_base


@task(name="load base model", cache_policy=NO_CACHE)
def resolve_base(settings: Settings) -> ResolvedBase:
    return load_base(settings.model.base, settings.root)
