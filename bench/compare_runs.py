"""Did a change move results beyond noise? Paired comparison of two `adaptflow run`s on the same
data version: per strategy, test accuracy of each and McNemar's exact test on their per-example
predictions (each strategy's test_predictions.json artifact).

  .venv/bin/python bench/compare_runs.py RUN_A RUN_B [--store-a DIR] [--store-b DIR]

RUN_A / RUN_B are parent run ids; a store is a folder holding mlflow.db and artifacts/
(default: ./mlflow). Strategies present in both runs are compared.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import table  # noqa: E402


def predictions(store: Path, parent: str) -> dict[str, dict]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    parent_run = client.get_run(parent)
    children = client.search_runs([parent_run.info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    out = {}
    for run in children:
        name = run.data.tags.get("strategy")
        if run.info.status != "FINISHED" or not name:
            continue
        try:
            path = client.download_artifacts(run.info.run_id, "test_predictions.json")
        except Exception:   # runs logged before the artifact existed
            continue
        out[name] = json.loads(Path(path).read_text())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--store-a", default="mlflow")
    parser.add_argument("--store-b")
    args = parser.parse_args()
    from tasks.evaluation.statistics import mcnemar

    a = predictions(Path(args.store_a).resolve(), args.run_a)
    b = predictions(Path(args.store_b or args.store_a).resolve(), args.run_b)
    rows = []
    for name in sorted(set(a) & set(b)):
        ya, yb = np.array(a[name]["y_true"]), np.array(b[name]["y_true"])
        if not np.array_equal(ya, yb):
            print(f"{name}: different test examples, not compared")
            continue
        ca, cb = np.array(a[name]["y_pred"]) == ya, np.array(b[name]["y_pred"]) == yb
        test = mcnemar(ca, cb)
        rows.append({"strategy": name, "accuracy_a": float(ca.mean()), "accuracy_b": float(cb.mean()),
                     "points": 100 * float(cb.mean() - ca.mean()), "only_a_right": test.only_a_correct, "only_b_right": test.only_b_correct,
                     "mcnemar_p": test.p_value})
    print(table(rows) if rows else "no strategy with predictions in both runs")


if __name__ == "__main__":
    main()
