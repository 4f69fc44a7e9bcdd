"""The same training and evaluation as `adaptflow run`, as a bare script: no Prefect, no MLflow,
no Great Expectations, no DVC, no child processes, no registry, no report.

  .venv/bin/python bench/bare.py [--profile NAME] [--strategies a,b]

It reads the processed splits the flow made (data/processed), and for each strategy calls the
same code the flow's strategy task calls: tokenizing (encode_splits), building and training
(_build_and_train), scoring prompt variants, the quality statistics (bootstrap intervals, ECE,
per-class figures), latency and throughput, forgetting, the merged model's speed, the learning
curve, and saving the artifact. Prints and returns seconds per strategy; bench/overhead.py
compares its wall time with the flow's.
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
    import torch

    from tasks.models.base import load_base
    from tasks.models.loading import load_tokenizer
    from tasks.evaluation.cost import measure_speed
    from tasks.evaluation.forgetting import forgetting_metrics
    from tasks.evaluation.cost import merged_speed_metrics
    from tasks.evaluation.metrics import accuracy, macro_f1
    from tasks.training.run import _build_and_train, encode_splits, learning_curve_points, score_variants, tightest_limit
    from tasks.evaluation.statistics import bootstrap_ci, per_class, reliability
    from tasks.strategies import registry
    from tasks.training.loop import seed_everything

    strategy = registry.get(name)
    params = strategy.parse_params(settings.strategy_params.get(name, {}))
    labels, cfg, ev = settings.validation.labels, settings.train, settings.evaluation
    torch.set_num_threads(cfg.threads)
    if getattr(params, "base", None) and params.base != base.name:
        base = load_base(params.base, settings.root)
    tok = load_tokenizer(base.path)
    max_eval = tightest_limit(cfg.max_eval_examples, getattr(params, "max_test_examples", 0))
    splits = encode_splits(tok, frames, labels, settings.model.max_length, cfg.max_train_examples, max_eval, cfg.seed)
    seed_everything(cfg.seed)
    if strategy.variants is None:
        model, metrics, _, probs = _build_and_train(strategy, params, base, labels, splits, cfg, tok.pad_token_id,
                                                    name, log_curves=False)
        acc = metrics["test_accuracy"]
    else:
        _, (_, _, model, _, probs), _ = score_variants(strategy, params, base, labels, splits, frames["train"],
                                                       tok.pad_token_id)
        acc = accuracy(splits["test"].labels, probs.argmax(1))
    y, pred = splits["test"].labels, probs.argmax(1)
    bootstrap_ci(y, pred, accuracy, seed=cfg.seed)
    bootstrap_ci(y, pred, lambda t, p: macro_f1(t, p, len(labels)), seed=cfg.seed)
    reliability(probs, y, n_bins=15)
    per_class(y, pred, len(labels))
    measure_speed(model, splits["test"], tok.pad_token_id)
    forgetting_metrics(model, strategy.trains, base, labels, tok, ev, cfg.seed)
    if strategy.merge is not None and ev.merged_latency:
        merged_speed_metrics(model, strategy.merge, splits["test"], tok.pad_token_id)
    if name in ev.learning_curve_strategies:
        learning_curve_points(strategy, params, base, labels, splits, cfg, tok.pad_token_id, name,
                              ev.learning_curve_sizes)
    with tempfile.TemporaryDirectory() as tmp:
        strategy.save(model, Path(tmp))
    return {"test_accuracy": float(acc)}


def run(params_file: str, profile: str | None, strategies: list[str] | None) -> dict:
    import pandas as pd

    from tasks.models.base import load_base
    from tasks.config import load_settings
    from tasks.data.prepare import SPLITS

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
