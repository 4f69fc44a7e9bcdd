"""tests/capture_guard.py in a pytest session of its own: code that closes sys.stdout or sys.stderr
while pytest captures them costs at most the test it happens in, and is named in a warning."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CONFTEST = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
pytest_plugins = ["capture_guard"]
"""

CLOSERS = """
import io, sys

def test_closes_stderr():
    sys.stderr.close()

def test_prints_after_it():
    print("still captured")

def test_closes_stdout_buffer():
    sys.stdout.buffer.close()

def test_detaches_stdout():
    io.TextIOWrapper(sys.stdout.detach())

def test_prints_after_them():
    print("still captured")
"""


def test_a_closed_capture_file_fails_no_later_test(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_closers.py").write_text(CLOSERS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_closers.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    out = done.stdout
    # The close is refused (no failure); the two that close it underneath fail themselves, and only them.
    assert "2 failed, 3 passed" in out, out
    assert "FAILED test_closers.py::test_closes_stdout_buffer" in out and "FAILED test_closers.py::test_detaches_stdout" in out
    assert "refused, by thread MainThread" in out and "test_closes_stderr" in out and "sys.stderr.close()" in out
    assert out.count("replaced by a fresh one") == 2
