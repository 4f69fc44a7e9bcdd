"""The same training and evaluation as `adaptflow run`, as a bare script: no Prefect, no MLflow,
no Great Expectations, no DVC, no child processes, no registry, no report.

  .venv/bin/python bench/bare.py [--profile NAME] [--strategies a,b]

It reads the processed splits the flow made (data/processed), and for each strategy calls the
same public functions the flow's strategy task calls: `prepare_inputs` (tokenizing) and
`compute` (building and training, or scoring prompt variants; the quality statistics, latency
and throughput, forgetting, the merged model's speed, the learning curve), then saves the
artifact with `save_outcome` and measures what owning it costs with `ownership_metrics` (for
an adapter on a shared base that times switching between its copies: 2.3 s of lora's task on
the AMX Xeon); only the MLflow logging (training/record.py) is left out.
Prints and returns seconds per strategy; bench/overhead.py compares its wall time with the flow's.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_strategy(name: str, settings, base, frames) -> dict:
    from tasks.training.run import compute, ownership_metrics, prepare_inputs, save_outcome

    inputs = prepare_inputs(settings, base, frames, name)
    outcome = compute(inputs, settings)
    with tempfile.TemporaryDirectory() as tmp:   # saved and measured as the flow does; MLflow is left out
        save_outcome(inputs, outcome, settings, Path(tmp) / name)
        ownership_metrics(inputs, outcome, settings, Path(tmp) / name)
    return {"test_accuracy": float(outcome.metrics["test_accuracy"])}


def run(params_file: str, profile: str | None, strategies: list[str] | None) -> dict:
    import pandas as pd

    from tasks.config import load_settings
    from tasks.data.prepare import SPLITS
    from tasks.models.base import load_base

    settings = load_settings(params_file, profile, strategies)
    base = load_base(settings.model.base, settings.root)
    processed = settings.root / settings.data.processed_dir
    frames = {s: pd.read_parquet(processed / f"{s}.parquet") for s in SPLITS}
    out = {}
    for name in settings.strategies:
        start = time.perf_counter()
        result = one_strategy(name, settings, base, frames)
        out[name] = {"seconds": time.perf_counter() - start, **result}
        print(f"bare: {name} {out[name]['seconds']:.1f} s, test_accuracy {result['test_accuracy']:.4f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--profile")
    parser.add_argument("--strategies", help="comma-separated; default: strategies.run")
    parser.add_argument("--json", help="also write the per-strategy seconds here")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    start = time.perf_counter()
    result = run(args.params, args.profile, args.strategies.split(",") if args.strategies else None)
    total = time.perf_counter() - start
    print(f"bare: {total:.1f} s for {', '.join(result)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"strategies": result, "seconds": total}))


if __name__ == "__main__":
    main()
