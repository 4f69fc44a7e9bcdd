"""Following the registry: where the followed aliases point now and what must change (pure);
a version's folder is fetched with tasks/artifacts/fetch.py."""
from __future__ import annotations

from dataclasses import dataclass

from mlflow.exceptions import MlflowException

from tasks.registry.canary_state import CANARY_ALIAS, SHARE_TAG, read_share
from tasks.serving.routing import CanaryRoute

Route = tuple[str, str]   # (registered model, alias)


@dataclass(frozen=True)
class Change:
    model: str
    alias: str
    old: str | None   # version served now (None: nothing yet)
    new: str


def plan_changes(routes: dict[Route, str | None], resolved: dict[Route, str | None],
                 refused: dict[Route, str]) -> list[Change]:
    """Aliases whose version moved. An alias that disappeared keeps serving what it served
    (health says so); a version already refused is not retried until the alias moves again."""
    changes = []
    for route, new in resolved.items():
        old = routes.get(route)
        if new is None or new == old or refused.get(route) == new:
            continue
        changes.append(Change(route[0], route[1], old, new))
    return changes


def _missing(exc: MlflowException) -> bool:
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


@dataclass(frozen=True)
class Registry:
    """Where the registry says each followed alias points, and each model's canary."""
    routes: dict[Route, str | None]          # (model, alias) -> version, None where the alias is not set
    canaries: dict[str, CanaryRoute | None]  # model -> its canary (version and share), or None


def resolve(client, models: list[str], aliases: list[str]) -> Registry:
    """One registry request per model: its aliases (the followed ones and @canary) and its canary
    share tag come with the registered model. A model that is gone has no aliases; other registry
    errors (unreachable server) propagate: the caller keeps serving and reports them."""
    routes: dict[Route, str | None] = {}
    canaries: dict[str, CanaryRoute | None] = {}
    for model in models:
        try:
            rm = client.get_registered_model(model)
            found, tags = {a: str(v) for a, v in (rm.aliases or {}).items()}, rm.tags
        except MlflowException as exc:
            if not _missing(exc):
                raise
            found, tags = {}, {}
        routes.update({(model, alias): found.get(alias) for alias in aliases})
        share = read_share(tags.get(SHARE_TAG))
        canaries[model] = CanaryRoute(found[CANARY_ALIAS], share) if CANARY_ALIAS in found and share > 0 else None
    return Registry(routes, canaries)
