"""pytest's global capture files, kept usable for the whole session.

While pytest captures, sys.stdout and sys.stderr are its capture files. Code under test (or a
thread it leaves behind) that closes sys.stdout or sys.stderr closes pytest's own file, and every
later test of that worker then errors in setup and teardown with "I/O operation on closed file".
CI at 2c8a56b: 52 tests of one xdist worker, after test_serving_mixed's HTTP test failed that way;
a rerun of the same commit passed, so the closer is a race we have not pinned down. The guard
refuses such a close and names its caller in a warning on the test where it happened; a file
closed underneath (through its buffer) is replaced before the next test, with a warning too.
A pytest plugin: `pytest_plugins = ["capture_guard"]` (tests/conftest.py)."""
from __future__ import annotations

import io
import tempfile
import threading
import traceback
import warnings

_refused: list[str] = []   # callers' stacks, reported on the next test boundary
_config: list = []         # the session's config (pytest_runtest_logstart is not given it)


class CaptureFileClosed(UserWarning):
    """Something closed pytest's capture of sys.stdout / sys.stderr during a test."""


def _captures(config) -> list:
    capman = config.pluginmanager.getplugin("capturemanager")
    multi = getattr(capman, "_global_capturing", None)
    # fd capture (pytest's default, and `make test`'s); --capture=sys / tee-sys are not guarded.
    return [c for c in (getattr(multi, "out", None), getattr(multi, "err", None))
            if c is not None and hasattr(c, "syscapture") and isinstance(c.tmpfile, io.TextIOWrapper)]


def _refuse_close(tmpfile) -> None:
    def close() -> None:
        _refused.append(f"thread {threading.current_thread().name}:\n" + "".join(traceback.format_stack(limit=15)))
    tmpfile.close = close


def pytest_configure(config) -> None:
    """Guard the session's capture files."""
    _config.append(config)
    for capture in _captures(config):
        _refuse_close(capture.tmpfile)


def pytest_unconfigure(config) -> None:
    """Before pytest closes its files itself."""
    for capture in _captures(config):
        capture.tmpfile.__dict__.pop("close", None)


def pytest_runtest_logstart(nodeid, location) -> None:
    """Before each test's setup, and after each of its phases (below), with capture suspended."""
    check(_config[-1], nodeid)


def pytest_runtest_logreport(report) -> None:
    check(_config[-1], report.nodeid)


def _unusable(tmpfile) -> bool:
    try:
        return tmpfile.closed
    except ValueError:   # detached from its buffer (io.TextIOWrapper(sys.stdout.detach()))
        return True


def check(config, nodeid: str) -> None:
    """At a test boundary (capture suspended): report refused closes; replace a closed file.
    Never raises: an error in a hook would end the whole xdist session."""
    try:
        _check(config, nodeid)
    except Exception as exc:   # noqa: BLE001 -- reported, never fatal
        warnings.warn(CaptureFileClosed(f"tests/capture_guard.py could not check pytest's capture files at "
                                        f"{nodeid}: {exc!r}"))


def _check(config, nodeid: str) -> None:
    while _refused:
        warnings.warn(CaptureFileClosed(f"pytest's capture file was closed during or before {nodeid}; "
                                        f"refused, by {_refused.pop(0)}"))
    for capture in _captures(config):
        if _unusable(capture.tmpfile):
            fresh = type(capture.tmpfile)(tempfile.TemporaryFile(buffering=0), encoding="utf-8", errors="replace",
                                          newline="", write_through=True)
            _refuse_close(fresh)
            capture.tmpfile = capture.syscapture.tmpfile = fresh
            warnings.warn(CaptureFileClosed(f"pytest's capture file was closed underneath (its buffer) during or "
                                            f"before {nodeid}; replaced by a fresh one"))
