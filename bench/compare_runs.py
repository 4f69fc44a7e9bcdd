"""Did a change move results beyond noise? Paired comparison of two `adaptflow run`s on the same
data version, per strategy. Classification: test accuracy of each and McNemar's exact test on
their per-example predictions (test_predictions.json). Generation: test ROUGE-L of each, how
many outputs are identical, and a paired permutation test on per-example ROUGE-L
(test_outputs.json).

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
        for artifact in ("test_predictions.json", "test_outputs.json"):
            try:
                path = client.download_artifacts(run.info.run_id, artifact)
            except Exception:   # the other task's artifact, or a run from before it existed
                continue
            out[name] = json.loads(Path(path).read_text())
    return out


def classification_row(name: str, a: dict, b: dict) -> dict | None:
    from tasks.evaluation.statistics import mcnemar

    ya, yb = np.array(a["y_true"]), np.array(b["y_true"])
    if not np.array_equal(ya, yb):
        return None
    ca, cb = np.array(a["y_pred"]) == ya, np.array(b["y_pred"]) == yb
    test = mcnemar(ca, cb)
    return {"strategy": name, "accuracy_a": float(ca.mean()), "accuracy_b": float(cb.mean()),
            "points": 100 * float(cb.mean() - ca.mean()), "only_a_right": test.only_a_correct,
            "only_b_right": test.only_b_correct, "mcnemar_p": test.p_value}


def generation_row(name: str, a: dict, b: dict) -> dict | None:
    from tasks.evaluation.text_metrics import paired_permutation_p

    ea, eb = a["examples"], b["examples"]
    if [(x["input"], x["reference"]) for x in ea] != [(x["input"], x["reference"]) for x in eb]:
        return None
    ra, rb = np.array([x["rougeL"] for x in ea]), np.array([x["rougeL"] for x in eb])
    return {"strategy": name, "rougeL_a": float(ra.mean()), "rougeL_b": float(rb.mean()),
            "difference": float(rb.mean() - ra.mean()),
            "same_outputs": f"{sum(x['output'] == y['output'] for x, y in zip(ea, eb))}/{len(ea)}",
            "permutation_p": paired_permutation_p(ra, rb)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--store-a", default="mlflow")
    parser.add_argument("--store-b")
    args = parser.parse_args()
    a = predictions(Path(args.store_a).resolve(), args.run_a)
    b = predictions(Path(args.store_b or args.store_a).resolve(), args.run_b)
    rows = []
    for name in sorted(set(a) & set(b)):
        row = (generation_row if "examples" in a[name] else classification_row)(name, a[name], b[name])
        if row is None:
            print(f"{name}: different test examples, not compared")
        else:
            rows.append(row)
    print(table(rows) if rows else "no strategy with predictions in both runs")
    if rows:
        # A prompting strategy logs test_accuracy as the mean over its prompt variants
        # (tasks/training/variants.py); its predictions file is the variant it saved.
        print("accuracies are of the predictions each run saved: for a prompting strategy, the variant "
              "chosen on validation, not the run's test_accuracy (the mean over its variants)")


if __name__ == "__main__":
    main()
