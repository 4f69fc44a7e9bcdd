"""`adaptflow run` starts Prefect's temporary server itself, right after its checks (flows/cli.py):
it must end with the command however the command ends, and hold the run's last log lines."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import env_for_subprocess

from tasks.ops.servers import port_open

ADAPTFLOW = str(Path(sys.executable).parent / "adaptflow")
SERVER_LINE = re.compile(r"Prefect: temporary server on http://127\.0\.0\.1:(\d+)/api")


def wait_closed(port: int, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while port_open(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_run_its_settings_refuse_starts_no_server(project_factory, tmp_path):
    """The checks come before the server (a first run times bf16 on a quiet CPU there)."""
    project = project_factory()
    env = env_for_subprocess(PREFECT_HOME=str(tmp_path / "prefect"))
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([ADAPTFLOW, "run", "--strategies", "no_such_strategy"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "unknown strategy no_such_strategy" in done.stderr, done.stderr[-2000:]
    assert not SERVER_LINE.search(done.stderr) and not (tmp_path / "prefect" / "temporary-server.log").exists()


def test_a_killed_run_leaves_no_server_behind(project_factory, tmp_path):
    """SIGKILL gives the command no chance to stop it: the server ends on its own."""
    project = project_factory()
    env = env_for_subprocess(PREFECT_HOME=str(tmp_path / "prefect"))
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([ADAPTFLOW, "run", "--profile", "smoke"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in proc.stderr:
            if (found := SERVER_LINE.search(line)):
                port = int(found.group(1))
                break
        assert port is not None, "no temporary server line"
        deadline = time.monotonic() + 120
        while not port_open(port):
            assert time.monotonic() < deadline and proc.poll() is None, "the server never listened"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert wait_closed(port), f"the temporary server on port {port} outlived the killed command"

