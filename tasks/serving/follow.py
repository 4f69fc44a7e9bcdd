"""Following the registry: where the followed aliases point now and what must change (pure);
a version's folder is fetched with tasks/artifacts/fetch.py."""
from __future__ import annotations

from dataclasses import dataclass

from mlflow.exceptions import MlflowException

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
