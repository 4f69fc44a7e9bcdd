"""The generation comparison of one `adaptflow run` (task: generation), as docs/generation.md quotes it:
per strategy ROUGE-L [95 % CI], chrF, exact match, trainable %, artifact MB, train s, generation
p50 ms, forgetting, and the paired permutation p-value against zero_shot on per-example ROUGE-L;
then the run's recommendation and registered version, and whether the version holding an alias
(default @challenger), loaded through adaptflow's own loader, writes what the run's evaluation
wrote for the first N test inputs.

  .venv/bin/python bench/generation_table.py PARENT_RUN_ID [--project DIR] [--model bbc-headlines]
      [--alias challenger | --version N] [--check 10]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import table  # noqa: E402


def outputs(client, run_id: str) -> list[dict]:
    return json.loads(Path(client.download_artifacts(run_id, "test_outputs.json")).read_text())["examples"]


def rows(client, children, reference: str = "zero_shot") -> list[dict]:
    from tasks.evaluation.text_metrics import paired_permutation_p

    done = {r.data.tags["strategy"]: r for r in children if r.info.status == "FINISHED"}
    scores = {n: np.array([x["rougeL"] for x in outputs(client, r.info.run_id)]) for n, r in done.items()}
    out = []
    for name, run in done.items():
        m = run.data.metrics
        p = (paired_permutation_p(scores[name], scores[reference]) if reference in scores and name != reference
             and len(scores[name]) == len(scores[reference]) else float("nan"))
        out.append({"strategy": name, "ROUGE-L": f"{m['test_rougeL']:.4f} [{m['test_rougeL_ci_low']:.3f}, "
                                                  f"{m['test_rougeL_ci_high']:.3f}]",
                    "chrF": m["test_chrf"], "exact": m["test_exact_match"],
                    "trainable %": 100 * m["trainable_fraction"], "artifact MB": m["artifact_bytes"] / 1e6,
                    "train s": m["train_seconds"], "gen p50 ms": m["latency_ms_p50"],
                    "forgetting": m.get("forgetting_delta", float("nan")), f"p vs {reference}": p})
    return out


def check_version(project: Path, model: str, version, expected: list[dict], n: int, alias: str | None) -> str:
    from tasks.artifacts.fetch import fetch_version
    from tasks.artifacts.predictor import load_predictor, predict

    with tempfile.TemporaryDirectory() as tmp:
        got = predict(load_predictor(fetch_version(model, version.version, Path(tmp))),
                      [x["input"] for x in expected[:n]]).outputs
    same = sum(g == x["output"] for g, x in zip(got, expected[:n]))
    uri = f"models:/{model}@{alias} = v{version.version}" if alias else f"models:/{model}/{version.version}"
    return f"{uri} ({version.tags.get('strategy')}): {same}/{n} outputs identical"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_id")
    parser.add_argument("--project", default=".", help="the project folder holding mlflow/ (default: .)")
    parser.add_argument("--model", default="bbc-headlines", help="registered model (project.registered_model)")
    parser.add_argument("--alias", default="challenger")
    parser.add_argument("--version", help="check this version instead of the alias holder")
    parser.add_argument("--check", type=int, default=10, help="test inputs to regenerate from the alias")
    args = parser.parse_args()
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    from mlflow.tracking import MlflowClient

    from tasks.tracking import use_store

    project = Path(args.project).resolve()
    use_store(project)
    client = MlflowClient()
    parent = client.get_run(args.run_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{args.run_id}'")
    print(table(rows(client, children)))
    start, end = parent.info.start_time, parent.info.end_time or parent.info.start_time
    print(f"\nparent run wall time: {(end - start) / 60000:.1f} min")
    decision = json.loads(Path(client.download_artifacts(args.run_id, "registry/decision.json")).read_text())
    print(f"registered: v{decision['version']} ({decision['strategy']}); @challenger "
          f"{'set' if decision['set_challenger'] else 'unchanged'}")
    alias = None if args.version else args.alias
    holder = (client.get_model_version(args.model, args.version) if args.version
              else client.get_model_version_by_alias(args.model, args.alias))
    run = next((r for r in children if r.info.run_id == holder.tags.get("run_id")), None)
    if run is None:
        print(f"{'@' + alias if alias else 'version'} v{holder.version} is from another run: nothing to compare")
    else:
        print(check_version(project, args.model, holder, outputs(client, run.info.run_id), args.check, alias))
    return 0


if __name__ == "__main__":
    sys.exit(main())
