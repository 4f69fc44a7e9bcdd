"""The settings every entry point applies (tasks/env.py), checked by their effect on the real
libraries in a fresh process, with its output captured (not a terminal, as in `make demo`'s log)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Logs three small artifacts to a throwaway store and downloads them back, as re-scoring and the
# report do, after adaptflow's entry-point settings.
DOWNLOAD = """
import sys
from pathlib import Path
from tasks.env import apply_offline_defaults
apply_offline_defaults()
import mlflow
root = Path(sys.argv[1])
mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
experiment = mlflow.create_experiment("bars", artifact_location=str(root / "artifacts"))
with mlflow.start_run(experiment_id=experiment) as run:
    for i in range(3):
        (root / f"f{i}.txt").write_text("x" * 100)
        mlflow.log_artifact(str(root / f"f{i}.txt"), "files")
got = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="files", dst_path=str(root / "out"))
print("downloaded", len(list(Path(got).iterdir())))
"""


def test_mlflow_draws_no_download_bars_in_a_log(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"}
    done = subprocess.run([sys.executable, "-c", DOWNLOAD, str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "downloaded 3" in done.stdout
    assert "Downloading artifacts" not in done.stdout + done.stderr
