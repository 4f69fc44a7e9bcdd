"""Is the MLflow store reachable? Asked once, before any data is read or any model trained.

MLflow's own client retries a refused connection for minutes (7 retries, backoff factor 2)
and then fails deep inside the first call; at start that is the wrong trade: a wrong URL or a
stopped server should say so within seconds. Mid-run, the same client retries are what we
want (a server restart is ridden out), plus Prefect retries of the strategy (ops.retries).
"""
from __future__ import annotations

import time
from pathlib import Path

from tasks.errors import UserError


class TrackingUnavailable(RuntimeError, UserError):
    """The MLflow tracking store cannot be reached (the message says where and what to do)."""


def check_tracking(uri: str, within_seconds: float = 20.0, interval: float = 2.0) -> None:
    """Raise TrackingUnavailable unless `uri` answers within `within_seconds`."""
    if uri.startswith(("http://", "https://")):
        _check_server(uri.rstrip("/"), within_seconds, interval)
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".adaptflow-write-check"
        try:
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise TrackingUnavailable(f"the MLflow store {uri} is not writable: {exc}") from exc


def _check_server(url: str, within_seconds: float, interval: float) -> None:
    import requests

    deadline, last = time.monotonic() + within_seconds, "no answer"
    while True:
        try:
            answer = requests.get(f"{url}/health", timeout=min(5.0, within_seconds))
            if answer.ok:
                return
            last = f"HTTP {answer.status_code} from {url}/health"
        except requests.RequestException as exc:
            last = f"{type(exc).__name__}: {str(exc)[:300]}"
        if time.monotonic() + interval > deadline:
            break
        time.sleep(interval)
    raise TrackingUnavailable(
        f"the MLflow tracking server {url} did not answer for {within_seconds:.0f} s ({last}). Nothing was "
        f"trained. Start it (`adaptflow ui` starts one on 127.0.0.1) or point MLFLOW_TRACKING_URI at a running "
        f"server; unset it to use the local store under mlflow/.")
