"""Start and stop the servers adaptflow talks to, on 127.0.0.1: a Prefect server, an MLflow
tracking server, and (production profile) a PostgreSQL cluster of our own. Used by
`adaptflow ui` and by the tests, which start their own on free ports.

Each server runs in a session of its own (start_new_session), so a Ctrl-C in the terminal
reaches only adaptflow, which then stops them in order and waits for them to exit.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# A new Prefect database is migrated on first start; on this loaded 2-core machine that took
# over 60 s. MLflow's sqlite migrations take ~20 s.
START_TIMEOUT_SECONDS = 300


class ServerError(RuntimeError):
    """A server did not start (the message holds the end of its log)."""


@dataclass
class Server:
    name: str
    url: str                   # what clients use (Prefect: the API URL, .../api)
    health_url: str
    proc: subprocess.Popen
    log: Path

    def healthy(self) -> bool:
        import requests

        try:
            return requests.get(self.health_url, timeout=3).ok
        except requests.RequestException:
            return False

    def wait_healthy(self, timeout: float = START_TIMEOUT_SECONDS, poll: float = 1.0) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}")
            if self.healthy():
                return self
            time.sleep(poll)
        self.stop()
        raise ServerError(f"{self.name} did not answer {self.health_url} within {timeout:.0f} s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM to the server's whole process group (uvicorn workers included), SIGKILL after
        `timeout` seconds. Returns the exit code."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _spawn(name: str, cmd: list[str], env: dict[str, str], log: Path, die_with_parent: bool = False) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_sigterm_when_parent_dies() if die_with_parent else None)


def _sigterm_when_parent_dies():
    """What the child runs before exec, on Linux: SIGTERM when the thread that started it ends
    (the command's main thread: call from it), even by SIGKILL, so a killed command leaves no
    server behind. libc is loaded here, in the parent: nothing is imported after the fork."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return lambda: libc.prctl(1, signal.SIGTERM)   # 1 = PR_SET_PDEATHSIG


# Automations (Prefect's triggers service) are not used by adaptflow; a server of its own that
# nobody else reaches does not evaluate them. Its proactive triggers ran every 5 s: an idle
# temporary server took 5.9 s of CPU a minute with them and 2.2 s without (AMX Xeon), CPU a
# `make demo` spends beside its training.
QUIET_PREFECT_SERVER = {"PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false"}


def start_temporary_prefect(port: int, log: Path) -> Server:
    """Prefect's temporary API server: what `prefect` starts by itself on a flow's first API call
    when no server is configured (SubprocessASGIServer: its uvicorn app in ephemeral mode, no UI,
    state in PREFECT_HOME), started by adaptflow instead, so that it can start before its imports
    and this process never imports prefect.server (3 s). It ends with the command that started it."""
    import importlib.util

    site = Path(importlib.util.find_spec("prefect").origin).parent.parent
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
           **QUIET_PREFECT_SERVER}
    env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(site), "--factory", "prefect.server.api.server:create_app",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"]
    url = f"http://127.0.0.1:{port}"
    return Server("Prefect temporary server", f"{url}/api", f"{url}/api/health",
                  _spawn("prefect", cmd, env, log, die_with_parent=True), log)


def start_prefect(port: int, home: Path, database_url: str | None = None, scheduler_loop_seconds: float | None = None,
                  log: Path | None = None) -> Server:
    """`prefect server start` on 127.0.0.1:port with its state under `home` (sqlite there, or
    `database_url`: postgresql+asyncpg://...)."""
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port)}
    env.pop("PREFECT_API_URL", None)   # the server must not try to talk to another one
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    if scheduler_loop_seconds:
        env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = str(scheduler_loop_seconds)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
           "--analytics-off"]
    log = log or home / "prefect-server.log"
    proc = _spawn("prefect", cmd, env, log)
    url = f"http://127.0.0.1:{port}"
    return Server("Prefect server", f"{url}/api", f"{url}/api/health", proc, log)


def start_mlflow(port: int, backend_store_uri: str, artifacts: Path, log: Path,
                 auth_config: Path | None = None, secret_key: str | None = None) -> Server:
    """`mlflow server` on 127.0.0.1:port; artifacts are served by it (mlflow-artifacts:/). With
    `auth_config` (a basic_auth.ini), `--app-name basic-auth` and its Flask `secret_key`."""
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", backend_store_uri, "--artifacts-destination", artifacts.resolve().as_uri()]
    # Job execution (MLflow's GenAI background jobs) starts a pool of Huey consumer processes,
    # about 8, each importing MLflow: CPU on a 2-core machine for a feature adaptflow never uses.
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    if auth_config is not None:
        cmd += ["--app-name", "basic-auth"]
        env.update(MLFLOW_AUTH_CONFIG_PATH=str(auth_config), MLFLOW_FLASK_SERVER_SECRET_KEY=secret_key or "")
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = _spawn("mlflow", cmd, env, log)
    url = f"http://127.0.0.1:{port}"
    return Server("MLflow server", url, f"{url}/health", proc, log)
