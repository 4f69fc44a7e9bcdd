"""`adaptflow ui`: both servers on 127.0.0.1 answer their health checks and the URLs are printed;
Ctrl-C (SIGINT) stops both and the command exits 0."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests
from conftest import env_for_subprocess

from tasks.ops.servers import free_port, port_open

ADAPTFLOW = str(Path(sys.executable).parent / "adaptflow")


def test_ui_starts_both_servers_and_ctrl_c_stops_both(project_factory):
    project = project_factory()
    prefect_port, mlflow_port = free_port(), free_port()
    env = env_for_subprocess(PREFECT_HOME=str(project / ".prefect"))
    env.pop("PREFECT_API_URL", None)
    started = time.monotonic()
    proc = subprocess.Popen([ADAPTFLOW, "ui", "--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port),
                             "--params", str(project / "params.yaml")], env=env, cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C stops both" in line:
                break
        ready = time.monotonic() - started
        text = "".join(lines)
        assert f"http://127.0.0.1:{prefect_port}" in text and f"http://127.0.0.1:{mlflow_port}" in text, text
        assert requests.get(f"http://127.0.0.1:{prefect_port}/api/health", timeout=10).json() is True
        assert requests.get(f"http://127.0.0.1:{mlflow_port}/health", timeout=10).ok
        servers = psutil.Process(proc.pid).children(recursive=False)
        assert len(servers) == 2

        proc.send_signal(signal.SIGINT)      # what Ctrl-C sends
        code = proc.wait(timeout=120)
        stopped = time.monotonic() - started - ready
        rest = proc.stdout.read()
        assert code == 0, rest
        assert "stopped MLflow server" in rest and "stopped Prefect server" in rest
        assert not port_open(prefect_port) and not port_open(mlflow_port)
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in servers)
        print(f"\nadaptflow ui: both healthy after {ready:.0f} s; Ctrl-C stopped both in {stopped:.1f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in psutil.Process().children(recursive=True):
            if p.pid != proc.pid and "server" in " ".join(p.cmdline()):
                p.kill()
