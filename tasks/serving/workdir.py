"""A serving replica's working folder (the versions it fetched from the registry), and the folders
of replicas that died without removing theirs.

`Service.stop` removes its folder on SIGTERM or Ctrl-C; a replica killed with SIGKILL (an OOM
kill, a node lost, tests/test_canary_live.py on purpose) cannot, and its folder stayed in the
temporary directory for good: 74 of them after one day of test runs, each holding the model
versions it served. Each folder now names its owner (host, pid and the pid's start time), and a
replica starting removes the folders whose owner is gone. A folder is only judged on this host
(a /tmp shared between containers holds folders of pids this one cannot see), and one without
an owner file (a replica between creating it and writing the file, or one made before replicas
wrote it) is left alone."""
from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

PREFIX = "adaptflow-serve-"
OWNER_FILE = ".owner.json"


def new_workdir(parent: Path | None = None) -> Path:
    """A fresh folder for this replica, after removing the folders of dead ones in `parent`
    (default: the temporary directory)."""
    remove_stale(parent)
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
    pid = os.getpid()
    tmp = folder / f"{OWNER_FILE}.tmp"
    tmp.write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": _started(pid)}))
    tmp.replace(folder / OWNER_FILE)
    return folder


def remove_stale(parent: Path | None = None) -> list[Path]:
    """Remove the working folders in `parent` whose owner, on this host, is no longer running;
    returns them."""
    removed = []
    for folder in Path(parent or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        if folder.is_dir() and _owner_gone(folder / OWNER_FILE):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _owner_gone(owner_file: Path) -> bool:
    try:
        owner = json.loads(owner_file.read_text())
        pid, host, started = int(owner["pid"]), owner["host"], owner["started"]
    except (OSError, ValueError, KeyError, TypeError):   # no owner yet, or not ours to judge
        return False
    return host == socket.gethostname() and _started(pid) != started   # a reused pid is another process


def _started(pid: int) -> float | None:
    """The process's start time (psutil's create_time, which tells a reused pid apart); None when
    no such process runs."""
    import psutil

    try:
        return round(psutil.Process(pid).create_time(), 2)
    except psutil.NoSuchProcess:
        return None
