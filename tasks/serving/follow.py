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


def resolve_aliases(client, models: list[str], aliases: list[str]) -> dict[Route, str | None]:
    """(model, alias) -> version number, None where the alias is not set. Other registry
    errors (unreachable server) propagate: the caller keeps serving and reports them."""
    out: dict[Route, str | None] = {}
    for model in models:
        for alias in aliases:
            try:
                out[(model, alias)] = str(client.get_model_version_by_alias(model, alias).version)
            except MlflowException as exc:
                if not _missing(exc):
                    raise
                out[(model, alias)] = None
    return out


def resolve_canaries(client, models: list[str]) -> dict[str, CanaryRoute | None]:
    """model -> the canary it runs (its version and share), or None: one registry request per model."""
    out: dict[str, CanaryRoute | None] = {}
    for model in models:
        rm = client.get_registered_model(model)
        version, share = (rm.aliases or {}).get(CANARY_ALIAS), read_share(rm.tags.get(SHARE_TAG))
        out[model] = CanaryRoute(str(version), share) if version is not None and share > 0 else None
    return out
