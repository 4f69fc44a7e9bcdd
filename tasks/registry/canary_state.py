"""Where a canary stands, kept in the registry so every `adaptflow serve` replica follows it
within one poll: the alias `canary` on the version and the registered model's tag `canary.share`
(0 or absent: no canary). Only audited entries change them (tasks/registry/canary.py writes the
entry, `apply_canary` makes the registry say what it says)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from mlflow.exceptions import MlflowException

log = logging.getLogger("adaptflow.registry")
CANARY_ALIAS = "canary"
SHARE_TAG = "canary.share"
STARTED_TAG = "canary.started_unix"   # on the version: the check's window starts here
# MLflow's limit on a tag value is 8,000 characters (5,000 in older servers): evidence is cut to fit.
MAX_TAG_CHARS = 4000


@dataclass(frozen=True)
class CanaryState:
    version: str
    share: float
    started: float       # UNIX time of the start entry


def read_share(raw: str | None) -> float:
    try:
        share = float(raw) if raw is not None else 0.0
    except ValueError:
        return 0.0
    return share if 0 < share < 1 else 0.0


def canary_state(client, model: str) -> CanaryState | None:
    """The running canary of `model`, or None."""
    rm = client.get_registered_model(model)
    version, share = (rm.aliases or {}).get(CANARY_ALIAS), read_share(rm.tags.get(SHARE_TAG))
    if version is None or share == 0:
        return None
    tags = client.get_model_version(model, str(version)).tags
    return CanaryState(str(version), share, float(tags.get(STARTED_TAG, "0") or 0))


def apply_canary(client, model: str, entry) -> None:
    """Idempotent (a writer finishing a dead writer's entry sets the same values)."""
    when = {"canary.by": entry.reviewer, "canary.at": entry.at, "canary.reason": entry.reason[:MAX_TAG_CHARS],
            "canary.audit_seq": str(entry.seq), "canary.action": entry.action}
    if entry.action == "canary_start":
        client.set_model_version_tag(model, entry.version, STARTED_TAG, str(entry.evidence.get("started_unix", 0)))
        for key, value in when.items():
            client.set_model_version_tag(model, entry.version, key, value)
        client.set_registered_model_tag(model, SHARE_TAG, repr(entry.share))   # the share first, then the alias
        client.set_registered_model_alias(model, CANARY_ALIAS, entry.version)
        return
    client.set_registered_model_tag(model, SHARE_TAG, "0")                     # traffic stops at the next poll
    try:
        client.delete_registered_model_alias(model, CANARY_ALIAS)
    except MlflowException:
        pass   # already gone (an earlier attempt of this same entry)
    for key, value in when.items():
        client.set_model_version_tag(model, entry.version, key, value)
    if entry.evidence:
        client.set_model_version_tag(model, entry.version, "canary.evidence",
                                     json.dumps(entry.evidence, sort_keys=True)[:MAX_TAG_CHARS])
    if entry.action == "canary_rollback":
        _tag_training_run(client, model, entry)


def _tag_training_run(client, model: str, entry) -> None:
    """The run that trained the version says, in the MLflow UI, that live traffic rejected it. A
    courtesy: an account without permission on that run's experiment still rolls back."""
    run_id = client.get_model_version(model, entry.version).run_id
    if not run_id:
        return
    try:
        client.set_tag(run_id, "adaptflow.canary", f"rolled back {entry.at}: {entry.reason}"[:MAX_TAG_CHARS])
    except MlflowException as exc:
        log.warning("could not tag run %s of %s v%s (%s); the rollback itself is done", run_id, model, entry.version,
                    str(exc).splitlines()[0][:200])
