"""One tuning worker (tests/test_ops_postgres.py starts two): tunes `lora` on the tiny BERT of a
test project against a shared Optuna storage, once every worker is ready (a barrier of files, so
the two really run at the same time), and prints what it ran as one JSON line.

    python tests/tune_worker.py PROJECT STORAGE_URL BARRIER_DIR WORKERS MLFLOW_DIR
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pandas as pd


def frames() -> dict[str, pd.DataFrame]:
    words = {"positive": ["moving", "funny", "sharp"], "negative": ["dull", "slow", "flat"]}
    rows = [{"text": f"review {i}: a {words[label][i % 3]} film (take {i})", "label": label}
            for i in range(120) for label in ("positive", "negative")]
    df = pd.DataFrame(rows)
    return {"train": df.iloc[:160], "validation": df.iloc[160:200], "test": df.iloc[200:]}


def barrier(folder: Path, workers: int, timeout: float = 300) -> None:
    (folder / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + timeout
    while len(list(folder.glob("ready-*"))) < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(folder.glob('ready-*')))} of {workers} workers ready")
        time.sleep(0.2)


def main(project: str, storage: str, barrier_dir: str, workers: str, mlflow_dir: str) -> None:
    import mlflow
    from tasks.config import load_settings
    from tasks.models.base import load_base
    from tasks.tracking import use_store
    from tasks.training.run import prepare_inputs
    from tasks.training.tuning import tune_strategy

    tune = {"enabled": True, "trials": 6, "startup_trials": 6, "storage": storage}
    settings = load_settings(Path(project) / "params.yaml", "smoke", ["lora"], {"tune": tune})
    base = load_base(settings.model.base, settings.root)
    inputs = prepare_inputs(settings, base, frames(), "lora")
    Path(mlflow_dir).mkdir(parents=True, exist_ok=True)
    use_store(Path(mlflow_dir))   # each worker its own MLflow store: only the study is shared
    experiment = mlflow.create_experiment("tune-worker")
    with mlflow.start_run(experiment_id=experiment):
        barrier(Path(barrier_dir), int(workers))
        tuned = tune_strategy(inputs, settings, "shared-data", experiment)
    mine = [t.number for t in tuned.trials if t.worker.endswith(f":{os.getpid()}")]
    print(json.dumps({"study": tuned.study, "pid": os.getpid(), "mine": mine, "chosen": tuned.chosen,
                      "trials": len(tuned.trials)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
