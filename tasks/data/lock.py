"""One run at a time through the data steps of a project root.

Two runs on one project (a UI-triggered `specialize` overlapping the scheduled `retrain`) share
data-params.yaml, data/raw, data/processed and dvc.lock: interleaved, one could train on the
other's splits and tag the wrong source. The data steps (ingest, gates, split, push) therefore
hold an exclusive lock file beside the project's caches; a second run waits, says for whom, and
gives up after ops.data_lock_timeout_seconds. An OS file lock (flock) is released when its holder
dies, so a killed run never leaves the project locked. It serialises runs on one machine (or
one shared filesystem that honours flock), which is where one project root lives.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from tasks.errors import UserError

LOCK_FILE = ".cache/adaptflow-data.lock"
POLL_SECONDS = 1.0


class DataLockTimeout(RuntimeError, UserError):
    """Another run kept the project's data steps for longer than the timeout."""


def _holder(fh) -> str:
    fh.seek(0)
    try:
        h = json.loads(fh.read() or "{}")
    except ValueError:
        return "another run"
    return f"pid {h.get('pid')} on {h.get('host')} ({h.get('what')}, since {h.get('since')})" if h else "another run"


@contextmanager
def data_steps_lock(root: Path, timeout_seconds: float, what: str,
                    say: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the project's data-steps lock for the block; `say` hears once that we wait, and for whom."""
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        start, told = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= timeout_seconds:
                    raise DataLockTimeout(
                        f"the data steps of {root} are held by {_holder(fh)}; waited {waited:.0f} s "
                        f"(ops.data_lock_timeout_seconds = {timeout_seconds:g}). Let that run finish its data "
                        f"steps, or raise the timeout; if no such process exists, nothing holds the lock "
                        f"and this message would not appear (the lock dies with its holder)") from None
                if not told:
                    say(f"waiting for the data steps of {root}: held by {_holder(fh)} "
                        f"(up to ops.data_lock_timeout_seconds = {timeout_seconds:g} s)")
                    told = True
                time.sleep(POLL_SECONDS)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                                 "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
            fh.flush()
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)
