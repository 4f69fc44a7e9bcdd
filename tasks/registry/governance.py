"""Reviewer actions on the registry: promote to @champion, roll back, and the audit history.

The pipeline only proposes (@challenger); these functions are the only ones that move
@champion. Every action appends one entry to the registered model's history, stored as one
registered-model tag per entry (`audit.000001`, ...) so entries are never overwritten, and
tags the version (who, when, why, previous champion, metric deltas). Versions are never
deleted. The champion chain is a replay of the history: promote pushes, rollback pops.
"""
from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.registry.errors import GovernanceError
from tasks.registry.identity import Identity, establish, refuse_pipeline_account

AUDIT_PREFIX = "audit."
CHAMPION = "champion"


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    action: str                 # "promote" or "rollback"
    version: str                # the new @champion
    previous: str | None        # the @champion before
    reviewer: str               # the account that made the change (tasks/registry/identity.py)
    reason: str
    at: str                     # UTC, ISO 8601
    deltas: dict[str, float] = field(default_factory=dict)   # new minus previous, per metric
    identity_source: str = ""   # how `reviewer` was established

    def line(self) -> str:
        moved = f"v{self.previous or '-'} -> v{self.version}"
        deltas = ", ".join(f"{k} {v:+.4f}" for k, v in sorted(self.deltas.items()))
        return (f"#{self.seq} {self.at} {self.action:<8} {moved:<12} by {self.reviewer}: {self.reason}"
                + (f"  [{deltas}]" if deltas else ""))


def champion_stack(entries: list[AuditEntry]) -> list[str]:
    """The chain of champions after replaying the history (last = current)."""
    stack: list[str] = []
    for e in sorted(entries, key=lambda e: e.seq):
        if e.action == "promote":
            stack.append(e.version)
        elif e.action == "rollback" and stack:
            stack.pop()
    return stack


def metric_deltas(new: dict[str, float], old: dict[str, float] | None) -> dict[str, float]:
    if not old:
        return {}
    return {k: new[k] - old[k] for k in sorted(set(new) & set(old))}


def _metrics(client: MlflowClient, model: str, version: str) -> dict[str, float]:
    tags = client.get_model_version(model, version).tags
    out = {}
    for key, value in tags.items():
        if key.startswith("metric."):
            try:
                out[key[len("metric."):]] = float(value)
            except ValueError:
                continue
    return out


def read_history(client: MlflowClient, model: str) -> list[AuditEntry]:
    try:
        tags = client.get_registered_model(model).tags
    except MlflowException as exc:
        raise GovernanceError(f"no registered model {model!r} in this store") from exc
    entries = [AuditEntry(**json.loads(v)) for k, v in tags.items() if k.startswith(AUDIT_PREFIX)]
    return sorted(entries, key=lambda e: e.seq)


def _current(client: MlflowClient, model: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(model, CHAMPION).version)
    except MlflowException:
        return None


@contextmanager
def registry_lock(tracking_uri: str) -> Iterator[None]:
    """Serialise reviewer actions on a local store (a file lock beside the sqlite database).
    A remote tracking server is serialised by running these actions through the Prefect
    deployments with a concurrency limit of one."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite":
        yield
        return
    lock_path = Path(parsed.path).with_suffix(".registry.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def identify(tracking_uri: str, reviewer: str | None, reason: str, pipeline_account: str | None) -> Identity:
    """Who acts, from an authenticated source (a name typed in is only checked against it); the
    pipeline's account is refused whichever way its credentials were given."""
    if not reason.strip():
        raise GovernanceError("--reason must say why (it is kept in the audit history)")
    refuse_pipeline_account(pipeline_account)            # before any request: configured credentials
    identity = establish(tracking_uri, reviewer)
    refuse_pipeline_account(pipeline_account, identity)  # the account the server signed us in as
    return identity


def _record(client: MlflowClient, model: str, action: str, version: str, previous: str | None,
            who: Identity, reason: str) -> AuditEntry:
    entries = read_history(client, model)
    entry = AuditEntry(seq=(entries[-1].seq + 1) if entries else 1, action=action, version=version,
                       previous=previous, reviewer=who.user, reason=reason, identity_source=who.source,
                       at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       deltas=metric_deltas(_metrics(client, model, version),
                                            _metrics(client, model, previous) if previous else None))
    client.set_registered_model_alias(model, CHAMPION, version)
    client.set_registered_model_tag(model, f"{AUDIT_PREFIX}{entry.seq:06d}", json.dumps(asdict(entry)))
    for key, value in {"champion.action": action, "champion.by": who.user, "champion.at": entry.at,
                       "champion.reason": reason, "champion.previous": previous or "none",
                       "champion.audit_seq": str(entry.seq)}.items():
        client.set_model_version_tag(model, version, key, value)
    return entry


def promote(client: MlflowClient, tracking_uri: str, model: str, reviewer: str | None, reason: str,
            version: str | None = None, from_alias: str | None = None,
            pipeline_account: str | None = None) -> AuditEntry:
    """`reviewer`: None, or the name the caller expects to act as (checked against the
    established identity on a server; recorded as given on a local store)."""
    who = identify(tracking_uri, reviewer, reason, pipeline_account)
    if (version is None) == (from_alias is None):
        raise GovernanceError("give exactly one of --version N or --from ALIAS")
    with registry_lock(tracking_uri):
        if from_alias is not None:
            try:
                version = str(client.get_model_version_by_alias(model, from_alias).version)
            except MlflowException as exc:
                raise GovernanceError(f"{model} has no @{from_alias} to promote") from exc
        try:
            client.get_model_version(model, version)
        except MlflowException as exc:
            raise GovernanceError(f"{model} has no version {version}") from exc
        current = _current(client, model)
        if current == version:
            raise GovernanceError(f"{model} v{version} is already @champion; nothing changed")
        return _record(client, model, "promote", version, current, who, reason)


def rollback(client: MlflowClient, tracking_uri: str, model: str, reviewer: str | None, reason: str,
             pipeline_account: str | None = None) -> AuditEntry:
    who = identify(tracking_uri, reviewer, reason, pipeline_account)
    with registry_lock(tracking_uri):
        stack = champion_stack(read_history(client, model))
        current = _current(client, model)
        if len(stack) < 2 or stack[-1] != current:
            raise GovernanceError(f"{model} has no earlier champion to roll back to"
                                  + ("" if not stack or stack[-1] == current else
                                     f" (its @champion v{current} was not set by adaptflow promote)")
                                  + "; nothing changed")
        return _record(client, model, "rollback", stack[-2], current, who, reason)
