"""The audit history of @champion moves: an append-only, hash-chained log with a compare-and-set
on its sequence that holds against an MLflow tracking server, not only a local file.

Entry N is a registered model of its own, `<model>.audit.<N>` (a "claim"), created with the
entry as its tag. Creating a registered model whose name exists fails on every store (a unique
name in the server's database), so exactly one writer gets each sequence number: that is the
compare-and-set. Each entry carries the SHA-256 of the previous claim's raw text, so a changed,
removed or inserted entry breaks the chain. The registered model's `audit.<N>` tags mirror the
claims for people reading the MLflow UI; `verify` compares them, so a forged or edited tag is
reported. A claim whose mirror tag is missing is still being applied (or its writer died): the
next writer finishes it first.

Who wrote an entry: creating a registered model needs no permission in MLflow's basic-auth, so
any signed-in account can create a well-formed `<model>.audit.<N>`, and MLflow records no
creator adaptflow could check. Each entry therefore carries an HMAC-SHA256 signature over its
fields and the model's name, with a key only the accounts allowed to move @champion hold
(ADAPTFLOW_AUDIT_KEY: the reviewers' environment and the reviewer deployments', from a secret
store; infra/README.md, "Concurrent reviewers"). A claim whose signature does not verify is
reported by `history` and ignored: never applied, never a link of the chain. On a tracking
server no entry is written without the key. A local store (no sign-in at all) signs when the key
is set and otherwise keeps unsigned entries, as before.

Size: an entry is a registered-model tag, which MLflow 3.17 stores in a 5,000-character column
(String(5000): enforced by PostgreSQL and MySQL, not by SQLite; MLflow's own check allows
100,000), so an entry is bounded before it is written (`entry_limit`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

AUDIT_PREFIX = "audit."
ENTRY_TAG = "adaptflow.audit.entry"
GENESIS = "0" * 64   # prev_hash of entry 1
AUDIT_KEY_ENV = "ADAPTFLOW_AUDIT_KEY"
CHECK_KEY_ENV = "ADAPTFLOW_CANARY_CHECK_KEY"
# What an entry signed with the check's key may do: stop a canary. Never move @champion.
PIPELINE_ACTIONS = frozenset({"canary_rollback"})
MIN_KEY_CHARS = 32   # `openssl rand -hex 32` gives 64; 32 hex characters are 128 bits
SIGNATURE = "signature"


def claim_name(model: str, seq: int) -> str:
    return f"{model}.{AUDIT_PREFIX}{seq:06d}"


def tag_key(seq: int) -> str:
    return f"{AUDIT_PREFIX}{seq:06d}"


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Claim:
    seq: int
    raw: str                  # the entry's JSON exactly as written
    created_ms: int           # server time of the claim

    def fields(self) -> dict | None:
        """The entry as a dict, or None when it is not a JSON object (reported, not fatal)."""
        try:
            value = json.loads(self.raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def audit_key() -> bytes | None:
    """The signing key from ADAPTFLOW_AUDIT_KEY (None when unset); a short one is refused."""
    return _key(AUDIT_KEY_ENV)


def _key(name: str) -> bytes | None:
    from tasks.registry.errors import GovernanceError

    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if len(value) < MIN_KEY_CHARS:
        raise GovernanceError(f"{name} is {len(value)} characters; use at least {MIN_KEY_CHARS} "
                              "(`openssl rand -hex 32`); nothing changed")
    return value.encode("utf-8")


def sign(key: bytes, model: str, entry: dict) -> str:
    """HMAC-SHA256 over the model's name and the entry's fields (its own signature left out)."""
    body = json.dumps({k: v for k, v in entry.items() if k != SIGNATURE}, sort_keys=True)
    return hmac.new(key, f"{model}\n{body}".encode("utf-8"), hashlib.sha256).hexdigest()


def signed_by_key(claim: Claim, model: str, key: bytes) -> bool:
    entry = claim.fields()
    return (entry is not None and isinstance(entry.get(SIGNATURE), str)
            and hmac.compare_digest(entry[SIGNATURE], sign(key, model, entry)))


def check_key() -> bytes | None:
    """The canary check's key (ADAPTFLOW_CANARY_CHECK_KEY): held by the pipeline's process, it signs
    only a canary rollback, an entry that can do no more than stop a canary (PIPELINE_ACTIONS)."""
    return _key(CHECK_KEY_ENV)


def trusted(claims: list[Claim], model: str, key: bytes | None, check: bytes | None = None) -> list[Claim]:
    """The claims that count: with a key, those it signed, and the canary rollbacks the check's key
    signed; without one (a local store, or the pipeline's process), the readable ones."""
    if not key:
        return [c for c in claims if c.fields() is not None]
    return [c for c in claims if signed_by_key(c, model, key)
            or (check is not None and (c.fields() or {}).get("action") in PIPELINE_ACTIONS
                and signed_by_key(c, model, check))]


def entry_limit() -> int:
    """The longest entry the registry stores: MLflow's tag-value check, and the registered-model
    tag column of its SQL schema (5,000 characters in MLflow 3.17)."""
    from mlflow.store.model_registry.dbmodels.models import SqlRegisteredModelTag
    from mlflow.utils.validation import MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH

    column = getattr(SqlRegisteredModelTag.__table__.c.value.type, "length", None)
    return min(MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH, column or MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH)


def read_claims(client: MlflowClient, model: str) -> list[Claim]:
    """Every claim of `model`, in sequence order (one paged search)."""
    prefix = f"{model}.{AUDIT_PREFIX}"
    claims, token = [], None
    while True:
        page = client.search_registered_models(filter_string=f"name LIKE '{prefix}%'", max_results=1000,
                                               page_token=token)
        for rm in page:
            suffix = rm.name[len(prefix):]   # `_` in a model name is a LIKE wildcard: check exactly
            if rm.name.startswith(prefix) and suffix.isdigit():
                claims.append(Claim(int(suffix), rm.tags.get(ENTRY_TAG, ""), int(rm.creation_timestamp or 0)))
        token = page.token
        if not token:
            return sorted(claims, key=lambda c: c.seq)


def create_claim(client: MlflowClient, model: str, seq: int, raw: str) -> bool:
    """The compare-and-set: True if this writer now owns sequence number `seq`."""
    try:
        client.create_registered_model(claim_name(model, seq), tags={ENTRY_TAG: raw},
                                       description=f"adaptflow audit entry {seq} of {model}; never edit")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_ALREADY_EXISTS" or "already exists" in str(exc):
            return False
        raise
    return True


def verify(claims: list[Claim], tags: dict[str, str], model: str, key: bytes | None,
           check: bytes | None = None) -> list[str]:
    """What is wrong with the history: an entry not signed with the audit key (forged), a broken
    hash chain, a gap, an unreadable entry, a mirror tag that differs from its claim or has none
    (forged). Empty: intact. The chain runs through the trusted claims only."""
    problems = []
    if key is None and any((c.fields() or {}).get(SIGNATURE) for c in claims):
        problems.append(f"entries are signed but {AUDIT_KEY_ENV} is not set here: who wrote them is not checked")
    good = {c.seq for c in trusted(claims, model, key, check)}
    previous_raw, expected_seq = None, 1
    for c in claims:
        if c.seq != expected_seq:
            problems.append(f"entries {expected_seq}..{c.seq - 1} are missing (removed?)")
        expected_seq = c.seq + 1
        entry = c.fields()
        if entry is None:
            problems.append(f"entry {c.seq} is not readable JSON; skipped")
            continue
        if c.seq not in good:
            problems.append(f"entry {c.seq} is not signed with the audit key ({AUDIT_KEY_ENV}): written by an "
                            f"account that does not hold it (forged?); ignored, never applied")
            continue
        want = digest(previous_raw) if previous_raw is not None else GENESIS
        if entry.get("prev_hash") != want:
            problems.append(f"entry {c.seq} does not chain to the entry before it (hash mismatch: "
                            f"an entry was changed, removed or inserted)")
        if entry.get("seq") != c.seq:
            problems.append(f"entry {c.seq} says it is entry {entry.get('seq')}")
        previous_raw = c.raw
    claimed = {tag_key(c.seq): c.raw for c in claims}
    for key_, value in sorted(tags.items()):
        if not key_.startswith(AUDIT_PREFIX):
            continue
        if key_ not in claimed:
            problems.append(f"tag {key_} has no audit entry behind it: forged")
        elif value != claimed[key_]:
            problems.append(f"tag {key_} differs from audit entry {int(key_[len(AUDIT_PREFIX):])}: "
                            "edited after it was written")
    return problems
