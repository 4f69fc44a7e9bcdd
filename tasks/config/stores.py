"""Database settings that name a store: a file under the project (SQLite), a database URL several
processes share (postgresql+psycopg2://...), or env:NAME, the URL read from that environment
variable (the production profile: a password stays out of params). tune.storage and
outcomes.store are read here."""
from __future__ import annotations

import os
from pathlib import Path

from tasks.config.schema import SettingsError


def is_url(value: str) -> bool:
    return "://" in value or value.startswith("env:")


def database_url(key: str, value: str, root: Path, example: str = "postgresql+psycopg2://...") -> str:
    """`value` (the setting `key`) as a SQLAlchemy URL; a file's folder is created."""
    if value.startswith("env:"):
        name = value.removeprefix("env:")
        if not os.environ.get(name):
            raise SettingsError(f"{key}: {value} names the environment variable {name}, which is not set; set it "
                                f"to the database URL ({example})")
        return os.environ[name]
    if is_url(value):
        return value
    path = Path(value).expanduser()
    path = path if path.is_absolute() else (root / path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"
