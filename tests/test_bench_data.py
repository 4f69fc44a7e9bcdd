"""Benchmarks measure the default data they name, whatever the last `adaptflow run` left in
data/processed (after a run on other labels, bench/optimisations.py died with
"Target -9223372036854775808 is out of bounds")."""
from __future__ import annotations

import sys
from dataclasses import replace

import pandas as pd
import pytest
from conftest import ROOT

from tasks.config import load_settings
from tasks.data.prepare import SPLITS

sys.path.insert(0, str(ROOT))
from bench.common import default_splits  # noqa: E402


def test_benchmarks_prepare_the_default_data_and_ignore_what_a_run_left(project_factory):
    project = project_factory()
    processed = project / "data" / "processed"
    processed.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:   # what `adaptflow run --data other.csv` leaves behind
        pd.DataFrame({"text": ["another dataset"], "label": ["billing"]}).to_parquet(processed / f"{split}.parquet")
    settings = load_settings(project / "params.yaml")
    frames = default_splits(settings)
    assert set(frames["train"]["label"]) == set(settings.validation.labels) == {"negative", "positive"}
    assert len(frames["train"]) > 9000 and len(frames["test"]) > 2000
    with pytest.raises(SystemExit, match=r"labels \['negative', 'positive'\] are not validation.labels"):
        default_splits(replace(settings, validation=replace(settings.validation, labels=["billing", "refund"])))


def test_every_benchmark_result_names_its_commit(tmp_path):
    """docs/performance.md names the commit of every figure: the results carry it."""
    import subprocess

    from bench.common import commit, machine

    assert machine()["commit"] == commit()
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    (repo / "f.txt").write_text("a")
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run([*git[:3], "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert commit(repo) == head
    (repo / "f.txt").write_text("b")
    assert commit(repo) == head + "+dirty"
    assert commit(tmp_path / "nowhere").startswith("not recorded")
