"""Reviewer actions on the registry: promote to @champion, roll back, and the audit history.

The pipeline only proposes (@challenger); these functions are the only ones that move
@champion, and every move goes through one serialized path (`_append`): read the history,
decide, claim the next sequence number (a compare-and-set that holds on a tracking server:
tasks/registry/audit.py), and only then move the alias and tag the version (who, when, why,
previous champion, metric deltas). A writer that finds the last entry not yet applied waits
for it, or finishes it when its writer died. Versions are never deleted. The champion chain
is a replay of the history: promote pushes, rollback pops.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Callable

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.registry.audit import (AUDIT_KEY_ENV, GENESIS, PIPELINE_ACTIONS, Claim, audit_key, check_key, create_claim,
                                  digest, entry_limit, read_claims, sign, tag_key, trusted, verify)
from tasks.registry.canary_state import apply_canary
from tasks.registry.errors import GovernanceError
from tasks.registry.identity import Identity, establish, is_server, refuse_pipeline_account
from tasks.tracking import PRECISION_PREFIX, RECALL_PREFIX

CHAMPION = "champion"
# How long a reviewer waits for another reviewer's move to be applied before giving up (a move
# takes about a dozen registry requests: well under a second on a local server).
WAIT_SECONDS = 120
# A claimed entry whose alias move is not applied after this long: its writer died, and the
# next writer applies it. Compared with the server's creation time, so clocks must roughly agree.
STALE_SECONDS = 60
# The reason is free text kept in the entry, which must fit the registry's 5,000-character tag
# column with everything else (tasks/registry/audit.py, `entry_limit`): 2,000 characters is a
# long paragraph and leaves room for the fields and about 60 metric deltas.
MAX_REASON_CHARS = 2000


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
    prev_hash: str = ""         # SHA-256 of the previous entry as written (tasks/registry/audit.py)
    # Canary entries (tasks/registry/canary.py): the share started with, and a rollback's evidence.
    share: float | None = None
    evidence: dict = field(default_factory=dict)
    signature: str = ""         # HMAC-SHA256 with the audit key (tasks/registry/audit.py); "" unsigned

    def line(self) -> str:
        moved = f"v{self.previous or '-'} -> v{self.version}"
        deltas = ", ".join(f"{k} {v:+.4f}" for k, v in sorted(self.deltas.items()))
        share = f" share {self.share:.0%}" if self.share is not None else ""
        return (f"#{self.seq} {self.at} {self.action:<8} {moved:<12}{share} by {self.reviewer}: {self.reason}"
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


def _entry(claim: Claim) -> AuditEntry | None:
    """The claim as an entry, or None when it is unreadable (reported by `history`, skipped)."""
    raw = claim.fields()
    names = {f.name for f in fields(AuditEntry)}
    try:
        return AuditEntry(**{k: v for k, v in raw.items() if k in names}) if raw is not None else None
    except TypeError:
        return None


@dataclass(frozen=True)
class History:
    entries: list[AuditEntry]     # the readable entries, in order
    problems: list[str]           # tampering, gaps, unreadable entries, out-of-band moves
    champion: str | None          # where @champion points now


def history(client: MlflowClient, model: str) -> History:
    """The audit history, verified: it keeps going past a bad entry and says what is wrong."""
    try:
        tags = client.get_registered_model(model).tags
    except MlflowException as exc:
        raise GovernanceError(f"no registered model {model!r} in this store") from exc
    claims = read_claims(client, model)
    key, check = audit_key(), check_key()
    good = trusted(claims, model, key, check)   # forged (unsigned) entries are reported, not replayed
    entries = [e for e in map(_entry, good) if e is not None]
    problems = verify(claims, tags, model, key, check)
    problems += [f"entry {c.seq} lacks fields an entry needs; skipped" for c in good if _entry(c) is None]
    current, stack = _current(client, model), champion_stack(entries)
    applying = bool(good) and tag_key(good[-1].seq) not in tags
    if stack and current != stack[-1] and not applying:
        problems.append(f"@champion is v{current} but the history ends at v{stack[-1]}: moved outside adaptflow")
    return History(entries, problems, current)


def _current(client: MlflowClient, model: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(model, CHAMPION).version)
    except MlflowException:
        return None


def identify(tracking_uri: str, reviewer: str | None, reason: str, pipeline_account: str | None) -> Identity:
    """Who acts, from an authenticated source (a name typed in is only checked against it); the
    pipeline's account is refused whichever way its credentials were given."""
    if not reason.strip():
        raise GovernanceError("--reason must say why (it is kept in the audit history)")
    if len(reason) > MAX_REASON_CHARS:
        raise GovernanceError(f"--reason is {len(reason)} characters; at most {MAX_REASON_CHARS} (it is kept in the "
                              "audit history, a registry tag of bounded size); link a longer text; nothing changed")
    if is_server(tracking_uri) and audit_key() is None:
        raise GovernanceError(f"{AUDIT_KEY_ENV} is not set: on a tracking server every audit entry is signed with the "
                              "key reviewers hold, so a forged one is told apart (infra/README.md, \"Concurrent "
                              "reviewers\"); nothing changed")
    refuse_pipeline_account(pipeline_account)            # before any request: configured credentials
    identity = establish(tracking_uri, reviewer)
    refuse_pipeline_account(pipeline_account, identity)  # the account the server signed us in as
    return identity


# decide(entries, current @champion) -> (action, new champion, previous); raises GovernanceError
Decide = Callable[[list[AuditEntry], str | None], tuple[str, str, str | None]]


def _append(client: MlflowClient, model: str, decide: Decide, who: Identity, reason: str,
            **extra) -> AuditEntry:
    """The one path that moves @champion: decide on the current history, claim the next entry
    (compare-and-set), then apply it. Losing the claim to another reviewer means deciding again."""
    deadline, key, check = time.monotonic() + WAIT_SECONDS, audit_key(), check_key()
    while True:
        tags = client.get_registered_model(model).tags
        claims = read_claims(client, model)
        good = trusted(claims, model, key, check)   # a forged claim is never waited for, finished or chained to
        if good and tag_key(good[-1].seq) not in tags:              # the last move is being applied
            if time.time() * 1000 - good[-1].created_ms > STALE_SECONDS * 1000:
                _apply(client, model, good[-1])                     # its writer died: finish it
            else:
                _wait(deadline, model)
            continue
        action, version, previous = decide([e for e in map(_entry, good) if e is not None],
                                           _current(client, model))
        entry = AuditEntry(seq=claims[-1].seq + 1 if claims else 1, action=action, version=version,
                           previous=previous, reviewer=who.user, reason=reason,
                           at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           deltas=metric_deltas(_metrics(client, model, version),
                                                _metrics(client, model, previous) if previous else None),
                           identity_source=who.source,
                           prev_hash=digest(good[-1].raw) if good else GENESIS, **extra)
        # The reviewers' key signs everything; without it, the check's key signs only what it may do.
        raw = written(bounded(entry, entry_limit()), model, key or (check if action in PIPELINE_ACTIONS else None))
        if create_claim(client, model, entry.seq, raw):             # written before the alias moves
            claim = Claim(entry.seq, raw, 0)
            _apply(client, model, claim)
            return _entry(claim)                                    # as written: bounded and signed
        _wait(deadline, model)


def bounded(entry: AuditEntry, limit: int) -> AuditEntry:
    """The entry within `limit` characters as written (signature included): the reason is bounded
    before (`identify`); what can still overflow are the metric deltas (one per metric, two per
    label: a few hundred labels), dropped per-label first, then from the end, until it fits. The
    runs keep every figure. Refused, before anything is written, if even no deltas do not fit."""
    signature = "0" * 64   # its length, for the sum
    size = lambda e: len(json.dumps(asdict(replace(e, signature=signature)), sort_keys=True))   # noqa: E731
    if size(entry) <= limit:
        return entry
    order = sorted(entry.deltas, key=lambda k: (not k.startswith((PRECISION_PREFIX, RECALL_PREFIX)), k))
    kept = dict(entry.deltas)
    for name in order:
        kept.pop(name)
        if size(replace(entry, deltas=kept)) <= limit:
            return replace(entry, deltas=kept)
    raise GovernanceError(f"the audit entry would be {size(replace(entry, deltas={}))} characters, over the registry's "
                          f"{limit} (non-ASCII characters of --reason count up to 6 each): shorten --reason; "
                          "nothing changed")


def written(entry: AuditEntry, model: str, key: bytes | None) -> str:
    """The entry's text as stored: signed when there is a key."""
    fields_ = asdict(entry)
    if key is not None:
        fields_["signature"] = sign(key, model, fields_)
    return json.dumps(fields_, sort_keys=True)


def _wait(deadline: float, model: str) -> None:
    if time.monotonic() > deadline:
        raise GovernanceError(f"another reviewer kept moving {model}@{CHAMPION} for {WAIT_SECONDS} s; "
                              "nothing changed, try again")
    time.sleep(random.uniform(0.05, 0.3))   # jitter: two waiting writers do not retry in step


def _apply(client: MlflowClient, model: str, claim: Claim) -> None:
    """Make the registry say what the entry says; the mirror tag last marks it applied.
    Idempotent: a writer finishing a dead writer's entry sets the same values."""
    e = _entry(claim)
    if e is not None and e.action.startswith("canary"):
        apply_canary(client, model, e)
    elif e is not None:
        client.set_registered_model_alias(model, CHAMPION, e.version)
        for key, value in {"champion.action": e.action, "champion.by": e.reviewer, "champion.at": e.at,
                           "champion.reason": e.reason, "champion.previous": e.previous or "none",
                           "champion.audit_seq": str(e.seq)}.items():
            client.set_model_version_tag(model, e.version, key, value)
    client.set_registered_model_tag(model, tag_key(claim.seq), claim.raw)


def promote(client: MlflowClient, tracking_uri: str, model: str, reviewer: str | None, reason: str,
            version: str | None = None, from_alias: str | None = None,
            pipeline_account: str | None = None, evidence: dict | None = None) -> AuditEntry:
    """`reviewer`: None, or the name the caller expects to act as (checked against the
    established identity on a server; recorded as given on a local store). `evidence`: kept in
    the audit entry (e.g. the human review session the promotion rests on)."""
    who = identify(tracking_uri, reviewer, reason, pipeline_account)
    if (version is None) == (from_alias is None):
        raise GovernanceError("give exactly one of --version N or --from ALIAS")
    if from_alias is not None:
        try:
            version = str(client.get_model_version_by_alias(model, from_alias).version)
        except MlflowException as exc:
            raise GovernanceError(f"{model} has no @{from_alias} to promote") from exc
    try:
        client.get_model_version(model, version)
    except MlflowException as exc:
        raise GovernanceError(f"{model} has no version {version}") from exc

    def decide(entries: list[AuditEntry], current: str | None) -> tuple[str, str, str | None]:
        if current == version:
            raise GovernanceError(f"{model} v{version} is already @champion; nothing changed")
        return "promote", version, current

    return _append(client, model, decide, who, reason, **({"evidence": evidence} if evidence else {}))


def rollback(client: MlflowClient, tracking_uri: str, model: str, reviewer: str | None, reason: str,
             pipeline_account: str | None = None) -> AuditEntry:
    who = identify(tracking_uri, reviewer, reason, pipeline_account)

    def decide(entries: list[AuditEntry], current: str | None) -> tuple[str, str, str | None]:
        stack = champion_stack(entries)
        if len(stack) < 2 or stack[-1] != current:
            raise GovernanceError(f"{model} has no earlier champion to roll back to"
                                  + ("" if not stack or stack[-1] == current else
                                     f" (its @champion v{current} was not set by adaptflow promote)")
                                  + "; nothing changed")
        return "rollback", stack[-2], current

    try:
        client.get_registered_model(model)
    except MlflowException as exc:
        raise GovernanceError(f"no registered model {model!r} in this store") from exc
    return _append(client, model, decide, who, reason)
