"""Starting and stopping a canary, and the check's automatic rollback: audited like promote and
rollback (the same claim-then-apply path in tasks/registry/governance.py, the same hash chain).

A reviewer starts and stops a canary under the same identity rules as a promotion (never the
pipeline's account). The automatic rollback is the pipeline's own act, recorded with the
evidence under the account the check runs as. Nothing here moves @champion.
"""
from __future__ import annotations

import time

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.registry.canary_state import CANARY_ALIAS, CanaryState, canary_state
from tasks.registry.errors import GovernanceError
from tasks.registry.governance import CHAMPION, AuditEntry, _append, _current, identify
from tasks.registry.audit import AUDIT_KEY_ENV, CHECK_KEY_ENV, audit_key, check_key
from tasks.registry.identity import Identity, establish, is_server

CHECK_SOURCE = "the canary check (automatic, the pipeline's account)"


def start(client: MlflowClient, tracking_uri: str, model: str, version: str, share: float, reviewer: str | None,
          reason: str, pipeline_account: str | None = None) -> AuditEntry:
    who = identify(tracking_uri, reviewer, reason, pipeline_account)
    if not 0 < share < 1:
        raise GovernanceError(f"--share must be between 0 and 1 (a fraction of the traffic), got {share}")
    try:
        client.get_model_version(model, version)
    except MlflowException as exc:
        raise GovernanceError(f"{model} has no version {version}") from exc

    def decide(entries: list[AuditEntry], champion: str | None) -> tuple[str, str, str | None]:
        running = canary_state(client, model)
        if champion is None:
            raise GovernanceError(f"{model} has no @{CHAMPION}: a canary is compared with the champion; promote one "
                                  "first; nothing changed")
        if champion == version:
            raise GovernanceError(f"{model} v{version} is @{CHAMPION} already; nothing changed")
        if running is not None:
            raise GovernanceError(f"{model} already has a canary, v{running.version} at {running.share:.0%}: "
                                  f"`adaptflow canary stop {model}` first; nothing changed")
        return "canary_start", version, champion

    return _append(client, model, decide, who, reason, share=share, evidence={"started_unix": round(time.time(), 3)})


def stop(client: MlflowClient, tracking_uri: str, model: str, reviewer: str | None, reason: str,
         pipeline_account: str | None = None) -> AuditEntry:
    who = identify(tracking_uri, reviewer, reason, pipeline_account)
    return _end(client, model, who, reason, "canary_stop", {})


def roll_back(client: MlflowClient, tracking_uri: str, model: str, reason: str, evidence: dict,
              expected_version: str) -> AuditEntry | None:
    """The check's rollback: share to 0 and the canary alias removed, with the evidence. None
    when the canary it judged is no longer running (stopped or replaced since it read the outcomes)."""
    if is_server(tracking_uri) and audit_key() is None and check_key() is None:
        raise GovernanceError(f"{CHECK_KEY_ENV} is not set: on a tracking server the check signs its rollback with "
                              "the key that may only stop a canary (docs/releasing.md); nothing changed")
    who = establish(tracking_uri, None)
    try:
        return _end(client, model, Identity(who.user, f"{CHECK_SOURCE}; {who.source}"), reason, "canary_rollback",
                    evidence, expected_version)
    except _NotRunning:
        return None


class _NotRunning(GovernanceError):
    pass


def _end(client: MlflowClient, model: str, who: Identity, reason: str, action: str, evidence: dict,
         expected_version: str | None = None) -> AuditEntry:
    def decide(entries: list[AuditEntry], champion: str | None) -> tuple[str, str, str | None]:
        running: CanaryState | None = canary_state(client, model)
        if running is None or (expected_version is not None and running.version != expected_version):
            raise _NotRunning(f"{model} has no canary running (alias @{CANARY_ALIAS} with a share); nothing changed")
        return action, running.version, champion

    return _append(client, model, decide, who, reason, evidence=evidence)


def current_champion(client: MlflowClient, model: str) -> str | None:
    return _current(client, model)


def promote_ready(client: MlflowClient, tracking_uri: str, model: str, version: str, reason: str,
                  evidence: dict) -> AuditEntry:
    """canary.auto_promote: the check promotes the canary it found ready (an audit entry under its
    own account, marked as automatic), then ends the canary."""
    if is_server(tracking_uri) and audit_key() is None:
        raise GovernanceError(f"{AUDIT_KEY_ENV} is not set: canary.auto_promote moves @champion, an entry only the "
                              "reviewers' key signs (serve canary-check where that key is, or promote by hand); "
                              "nothing changed")
    who = establish(tracking_uri, None)
    auto = Identity(who.user, f"{CHECK_SOURCE} with canary.auto_promote; {who.source}")

    def decide(entries: list[AuditEntry], champion: str | None) -> tuple[str, str, str | None]:
        if champion == version:
            raise GovernanceError(f"{model} v{version} is @{CHAMPION} already; nothing changed")
        return "promote", version, champion

    entry = _append(client, model, decide, auto, f"canary check: {reason}", evidence=evidence)
    _end(client, model, auto, f"promoted to @{CHAMPION} (audit entry {entry.seq})", "canary_stop", {}, version)
    return entry
