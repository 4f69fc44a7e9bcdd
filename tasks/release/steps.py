"""The canary check for the flow and the CLI: each model's running canary judged once, against
the outcome store params name (outcomes.store), the pages written under the project."""
from __future__ import annotations

from tasks.config import Settings
from tasks.config.stores import database_url
from tasks.outcomes.store import OutcomeStore
from tasks.release.check import CheckResult, check_canary

PAGES = "reports/canary"


def check_models(client, tracking_uri: str, settings: Settings, models: list[str]) -> list[CheckResult]:
    store = OutcomeStore(database_url("outcomes.store", settings.outcomes.store, settings.root))
    try:
        return [check_canary(client, tracking_uri, model, settings.canary, store, settings.path(PAGES))
                for model in models]
    finally:
        store.dispose()
