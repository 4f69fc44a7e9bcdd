"""Tuned against untuned, as docs/tuning.md quotes it: two `adaptflow run`s on the
same data (one plain, one with --tune), per strategy validation and test accuracy / macro-F1
untuned and tuned, the exact McNemar p of tuned against untuned on the same test examples, the
chosen params, trials run / pruned / failed and the tuning time; then each run's recommendation
and registered version, and the McNemar p of the tuned hybrid (lora_prompt) against its tuned
parts where they ran.

  .venv/bin/python bench/tuning_table.py UNTUNED_RUN_ID TUNED_RUN_ID [--project DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, table  # noqa: E402


def strategy_runs(client, parent_id: str) -> dict:
    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    return {r.data.tags["strategy"]: r for r in children if r.info.status == "FINISHED"}


def artifact(client, run_id: str, path: str) -> dict:
    try:
        return json.loads(Path(client.download_artifacts(run_id, path)).read_text())
    except Exception:   # a run without it (untuned: no tuning.json)
        return {}


def correct(client, run) -> np.ndarray:
    preds = artifact(client, run.info.run_id, "test_predictions.json")
    return np.array(preds["y_true"]) == np.array(preds["y_pred"])


def rows(client, untuned: dict, tuned: dict) -> list[dict]:
    from tasks.evaluation.statistics import mcnemar

    out = []
    for name in [n for n in tuned if n in untuned]:
        a, b = untuned[name].data.metrics, tuned[name].data.metrics
        record = artifact(client, tuned[name].info.run_id, "tuning.json")
        states = [t["state"] for t in record.get("trials", [])]
        x, y = correct(client, untuned[name]), correct(client, tuned[name])
        p = mcnemar(y, x).p_value if len(x) == len(y) else float("nan")
        chosen = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in record.get("chosen", {}).items())
        out.append({"strategy": name, "val acc untuned": a.get("val_accuracy", float("nan")),
                    "val acc tuned": b.get("val_accuracy", float("nan")),
                    "test acc untuned": a["test_accuracy"], "test acc tuned": b["test_accuracy"],
                    "test F1 untuned": a["test_macro_f1"], "test F1 tuned": b["test_macro_f1"],
                    "p (McNemar)": p, "trials": len(states), "pruned": states.count("PRUNED"),
                    "failed": states.count("FAIL"), "tune s": b.get("tune_seconds", float("nan")),
                    "chosen": chosen})
    return out


def hybrid(client, runs: dict) -> str:
    from tasks.evaluation.statistics import mcnemar

    if "lora_prompt" not in runs:
        return "lora_prompt did not run here"
    h = correct(client, runs["lora_prompt"])
    acc = runs["lora_prompt"].data.metrics["test_accuracy"]
    parts = [f"{n} {runs[n].data.metrics['test_accuracy']:.4f} (p = {mcnemar(h, correct(client, runs[n])).p_value:.3g})"
             for n in ("lora", "prompt_tuning") if n in runs]
    return f"lora_prompt {acc:.4f} against " + "; ".join(parts)


def summary(client, parent_id: str) -> str:
    parent = client.get_run(parent_id)
    minutes = ((parent.info.end_time or parent.info.start_time) - parent.info.start_time) / 60000
    d = artifact(client, parent_id, "registry/decision.json")
    return (f"{parent_id[:8]}: {minutes:.1f} min; registered v{d.get('version')} ({d.get('strategy')}), "
            f"@challenger {'set' if d.get('set_challenger') else 'unchanged'}; " + " | ".join(d.get("reasons", [])[:1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("untuned")
    parser.add_argument("tuned")
    parser.add_argument("--project", default=".", help="the project folder holding mlflow/ (default: .)")
    args = parser.parse_args()
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    from mlflow.tracking import MlflowClient

    from tasks.tracking import use_store

    use_store(Path(args.project).resolve())
    client = MlflowClient()
    untuned, tuned = strategy_runs(client, args.untuned), strategy_runs(client, args.tuned)
    print(f"machine: {machine()['cpu']}\n")
    print(table(rows(client, untuned, tuned)))
    print(f"\nuntuned {summary(client, args.untuned)}\ntuned   {summary(client, args.tuned)}")
    print(f"\nhybrid, untuned: {hybrid(client, untuned)}\nhybrid, tuned:   {hybrid(client, tuned)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
