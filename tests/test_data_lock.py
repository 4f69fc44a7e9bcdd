"""Two runs on one project root: the data steps are taken one run at a time,
with a clear wait and timeout message, and data-params.yaml is replaced atomically."""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
import yaml

from tasks.config import DataSettings, write_dataset_params
from tasks.data.lock import DataLockTimeout, data_steps_lock


def test_a_second_run_waits_for_the_data_steps_and_gives_up_with_a_clear_message(tmp_path):
    held, release = threading.Event(), threading.Event()

    def first():
        with data_steps_lock(tmp_path, 5, "specialize run-a"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert held.wait(10)
    with pytest.raises(DataLockTimeout, match=r"held by pid \d+ .*specialize run-a.*ops.data_lock_timeout_seconds = 1"):
        with data_steps_lock(tmp_path, 1, "retrain"):
            pass
    said = []
    threading.Timer(1.5, release.set).start()
    start = time.monotonic()
    with data_steps_lock(tmp_path, 30, "retrain", said.append):
        waited = time.monotonic() - start
    thread.join()
    assert waited >= 1.0 and len(said) == 1 and "waiting for the data steps" in said[0] and "run-a" in said[0]


def test_data_params_are_replaced_atomically(tmp_path):
    """A reader polling while two runs rewrite data-params.yaml never sees half a file."""
    path = tmp_path / "data-params.yaml"
    settings = [DataSettings(source=f"s{i}.csv", processed_dir="data/processed", split_seed=i,
                             label_map={f"raw{j}": f"label{j}" for j in range(400)}) for i in range(2)]
    write_dataset_params(path, settings[0], {"raw_path": "x"}, "# header\n")
    stop, torn, reads = threading.Event(), [], [0]

    def reader():
        while not stop.is_set():
            loaded = yaml.safe_load(path.read_text())
            reads[0] += 1
            if not loaded or len(loaded["dataset"]["label_map"]) != 400:
                torn.append(loaded)

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(300):
        write_dataset_params(path, replace(settings[i % 2]), {"raw_path": "x"}, "# header\n")
    stop.set()
    thread.join()
    assert reads[0] > 10 and torn == [], f"{len(torn)} torn reads of {reads[0]}"
    assert not [p for p in tmp_path.iterdir() if p.name != "data-params.yaml"]   # no temporary file left
