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
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

AUDIT_PREFIX = "audit."
ENTRY_TAG = "adaptflow.audit.entry"
GENESIS = "0" * 64   # prev_hash of entry 1


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


def verify(claims: list[Claim], tags: dict[str, str]) -> list[str]:
    """What is wrong with the history: a broken hash chain, a gap, an unreadable entry, a mirror
    tag that differs from its claim or has none (forged). Empty: intact."""
    problems = []
    previous_raw, expected_seq = None, 1
    for c in claims:
        if c.seq != expected_seq:
            problems.append(f"entries {expected_seq}..{c.seq - 1} are missing (removed?)")
        entry = c.fields()
        if entry is None:
            problems.append(f"entry {c.seq} is not readable JSON; skipped")
        else:
            want = digest(previous_raw) if previous_raw is not None else GENESIS
            if entry.get("prev_hash") != want:
                problems.append(f"entry {c.seq} does not chain to entry {c.seq - 1} (hash mismatch: "
                                f"an entry was changed, removed or inserted)")
            if entry.get("seq") != c.seq:
                problems.append(f"entry {c.seq} says it is entry {entry.get('seq')}")
        previous_raw, expected_seq = c.raw, c.seq + 1
    claimed = {tag_key(c.seq): c.raw for c in claims}
    for key, value in sorted(tags.items()):
        if not key.startswith(AUDIT_PREFIX):
            continue
        if key not in claimed:
            problems.append(f"tag {key} has no audit entry behind it: forged")
        elif value != claimed[key]:
            problems.append(f"tag {key} differs from audit entry {int(key[len(AUDIT_PREFIX):])}: edited after it was written")
    return problems
