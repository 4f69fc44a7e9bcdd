"""pytest's global capture files, kept usable for the whole session.

While pytest captures, sys.stdout and sys.stderr are its capture files. Code under test (or a
thread it leaves behind) that closes sys.stdout or sys.stderr closes pytest's own file, and every
later test of that worker then errors in setup and teardown with "I/O operation on closed file".
CI at 2c8a56b: 52 tests of one xdist worker, after test_serving_mixed's HTTP test failed that way;
a rerun of the same commit passed, so the closer is a race we have not pinned down. The guard
refuses such a close and names its caller in a warning on the test where it happened; a file
closed underneath (through its buffer) is replaced before the next test, with a warning too."""
from __future__ import annotations

import tempfile
import threading
import traceback
import warnings

_refused: list[str] = []   # callers' stacks, reported on the next test boundary


class CaptureFileClosed(UserWarning):
    """Something closed pytest's capture of sys.stdout / sys.stderr during a test."""


def _captures(config) -> list:
    capman = config.pluginmanager.getplugin("capturemanager")
    multi = getattr(capman, "_global_capturing", None)
    return [c for c in (getattr(multi, "out", None), getattr(multi, "err", None))
            if c is not None and hasattr(c, "syscapture") and hasattr(c.tmpfile, "buffer")]


def _refuse_close(tmpfile) -> None:
    def close() -> None:
        _refused.append(f"thread {threading.current_thread().name}:\n" + "".join(traceback.format_stack(limit=15)))
    tmpfile.close = close


def install(config) -> None:
    """At configure time: guard the session's capture files."""
    for capture in _captures(config):
        _refuse_close(capture.tmpfile)


def uninstall(config) -> None:
    """At unconfigure time, before pytest closes its files itself."""
    for capture in _captures(config):
        capture.tmpfile.__dict__.pop("close", None)


def check(config, nodeid: str) -> None:
    """At a test boundary (capture suspended): report refused closes; replace a closed file."""
    while _refused:
        warnings.warn(CaptureFileClosed(f"pytest's capture file was closed during or before {nodeid}; "
                                        f"refused, by {_refused.pop(0)}"))
    for capture in _captures(config):
        if capture.tmpfile.closed:
            fresh = type(capture.tmpfile)(tempfile.TemporaryFile(buffering=0), encoding="utf-8", errors="replace",
                                          newline="", write_through=True)
            _refuse_close(fresh)
            capture.tmpfile = capture.syscapture.tmpfile = fresh
            warnings.warn(CaptureFileClosed(f"pytest's capture file was closed underneath (its buffer) during or "
                                            f"before {nodeid}; replaced by a fresh one"))
