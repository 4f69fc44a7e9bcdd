"""The canary split (pure): which arm a request that names no alias or version goes to.

Sticky by a client key: the key's hash, salted with the model and the canary's version, is a
point in [0, 1); the request goes to the canary when that point is below the share. The same key
lands on the same arm for as long as the share is unchanged, and raising the share only moves
keys from the champion to the canary (never back). A new canary version re-deals the keys, so one
unlucky group of clients is not every canary's test population. Without a key: random.
"""
from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass

CANARY = "canary"   # the registry alias a canary start sets; also the `alias` a canary answer names
MAX_CLIENT_KEY = 200


@dataclass(frozen=True)
class CanaryRoute:
    version: str
    share: float


def bucket(model: str, canary_version: str, key: str) -> float:
    digest = hashlib.sha256(f"{model}\x00{canary_version}\x00{key}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def goes_to_canary(model: str, canary: CanaryRoute | None, key: str | None, rng: random.Random) -> bool:
    if canary is None or canary.share <= 0:
        return False
    point = bucket(model, canary.version, key) if key else rng.random()
    return point < canary.share


def request_id() -> str:
    """A fresh id for every answer (32 hex characters): the outcome row, the log line and user
    feedback name the request by it."""
    return uuid.uuid4().hex
