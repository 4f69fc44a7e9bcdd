"""What the service shows and allows to a client it does not know (issue 27, finding 12 and the
/models part of finding 10), kept apart from the routes so each rule is a small function with a
test:

  check_exposure   a non-loopback --host without a token is refused unless the setting
                   serving.allow_unauthenticated_network says so
  LoadLimiter      loads of versions asked for by number, rate-limited per client (token bucket)
  public_health    /health says whether the registry poll fails, not the exception text
  public_models    /models shows a base's local folder only to a client with the token
"""
from __future__ import annotations

import ipaddress
import threading
import time
from pathlib import Path
from typing import Any, Callable

from tasks.config import ServingSettings
from tasks.models.packaged import PACKAGED


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:   # a host name other than localhost: it may resolve to anything
        return False


def exposure_problem(host: str, settings: ServingSettings) -> str | None:
    """Why serving on `host` with these settings is refused (None: it is not)."""
    if is_loopback(host) or settings.token_env is not None or settings.allow_unauthenticated_network:
        return None
    return (f"--host {host} is reachable from other machines and serving.token_env is null: anyone who reaches "
            f"it could ask for predictions and load versions. Set serving.token_env to a variable holding a "
            f"token, or put a proxy with authentication in front and set "
            f"serving.allow_unauthenticated_network: true, or serve on 127.0.0.1")


class LoadLimiter:
    """A token bucket per client: `burst` loads at once, refilled at `per_minute`. `take(client)`
    is the seconds to wait before the next load (0.0: allowed now, and counted)."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000):
        self.rate, self.burst, self.clock = per_minute / 60.0, float(burst), clock
        self.max_clients = max_clients   # a client cycling source addresses cannot grow this without bound
        self._buckets: dict[str, tuple[float, float]] = {}   # client -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                return (1.0 - tokens) / self.rate
            if client not in self._buckets and len(self._buckets) >= self.max_clients:
                self._buckets = {c: b for c, b in self._buckets.items() if b[0] < self.burst}   # full buckets go
            self._buckets[client] = (tokens - 1.0, now)
            return 0.0


def public_health(body: dict[str, Any]) -> dict[str, Any]:
    """/health without the registry error's text (it may name hosts, users or paths): a flag. The
    service log has the text."""
    out = {k: v for k, v in body.items() if k != "poll_error"}
    return {**out, "poll_failing": body.get("poll_error") is not None}


def public_models(loaded: list[dict[str, Any]], authenticated: bool) -> list[dict[str, Any]]:
    """/models rows: a base that is a local folder is shown by its folder's name only, unless the
    client sent the service's token."""
    if authenticated:
        return loaded
    return [{**row, "base": row["base"] if row.get("base") in PACKAGED else f"<local folder>/{Path(str(row.get('base'))).name}"}
            for row in loaded]
