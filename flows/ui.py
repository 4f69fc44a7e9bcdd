"""`adaptflow ui`: the Prefect server and an MLflow server over the project's own stores, on
127.0.0.1, until Ctrl-C (or SIGTERM) stops both."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from tasks.ops.servers import ServerError, port_open, start_mlflow, start_prefect


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_ui(params_file: str, prefect_port: int, mlflow_port: int) -> int:
    root = Path(params_file).resolve().parent
    for name, port in (("--prefect-port", prefect_port), ("--mlflow-port", mlflow_port)):
        if port_open(port):
            print(f"adaptflow ui: 127.0.0.1:{port} ({name}) is in use; choose another port", file=sys.stderr)
            return 2
    home = Path(os.environ.get("PREFECT_HOME") or root / ".prefect")
    store = root / "mlflow"
    logs = root / ".cache" / "ui"
    # SIGTERM behaves like Ctrl-C: both servers are stopped, not orphaned. SIGINT gets the same
    # handler explicitly: a shell starts background jobs with SIGINT ignored, and Python then
    # leaves it ignored, so Ctrl-C (or `kill -INT`) would not stop `adaptflow ui &`.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    servers = []
    try:
        servers.append(start_prefect(prefect_port, home, log=logs / "prefect-server.log"))
        servers.append(start_mlflow(mlflow_port, f"sqlite:///{store / 'mlflow.db'}", store / "artifacts",
                                    logs / "mlflow-server.log"))
        started = time.monotonic()
        for server in servers:
            server.wait_healthy()
        prefect, mlflow = servers
        print(f"Prefect UI  http://127.0.0.1:{prefect_port}   (API {prefect.url})\n"
              f"MLflow UI   {mlflow.url}\n"
              f"both healthy after {time.monotonic() - started:.0f} s; logs in {logs}\n"
              f"In another shell:  export PREFECT_API_URL={prefect.url} MLFLOW_TRACKING_URI={mlflow.url}\n"
              f"Ctrl-C stops both.", flush=True)
        while all(s.proc.poll() is None for s in servers):
            time.sleep(1)
        dead = [s for s in servers if s.proc.poll() is not None]
        print(f"adaptflow ui: {dead[0].name} exited ({dead[0].proc.returncode}):\n{dead[0].tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except ServerError as exc:
        print(f"adaptflow ui: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in reversed(servers):
            code = server.stop()
            print(f"stopped {server.name} (exit {code})", flush=True)
