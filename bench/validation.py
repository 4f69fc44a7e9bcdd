"""How long the data contract takes on the default data (Rotten Tomatoes, params.yaml rules).

  .venv/bin/python bench/validation.py [--repeats 5] [--params params.yaml]

Times, per repeat: reading the raw file (13,905 rows, bz2 CSV), the raw gate (Great
Expectations), the split gate on the three splits (12,751 rows; token counts with the MiniLM
tokenizer, duplicates, leakage, balance) and the Data Docs (HTML) of each gate. The splits are
made once by the same code as `dvc repro` (tasks.data.prepare), outside DVC and MLflow. Prints
medians and writes JSON to bench/results/validation.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from tasks.env import apply_offline_defaults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    apply_offline_defaults()

    from tasks.config import load_settings
    from tasks.data.contract import RawContract, SplitContract, validate_raw, validate_splits
    from tasks.data.prepare import SPLITS, prepare
    from tasks.data.source import detect_format, read_table, resolve_source
    from tasks.models.base import resolve_base_path
    from tasks.models.loading import load_tokenizer

    settings = load_settings(args.params)
    d, v = settings.data, settings.validation
    source = resolve_source(d.source, settings.root)
    fmt = detect_format(source, d.format)
    tokenizer = load_tokenizer(resolve_base_path(settings.model.base, settings.root))
    count = lambda texts: [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]
    raw_contract = RawContract(d, v)
    split_contract = SplitContract.from_settings(settings)
    with tempfile.TemporaryDirectory() as tmp:
        from dataclasses import replace

        prepare(replace(d, processed_dir=tmp), source)
        frames = {s: pd.read_parquet(Path(tmp) / f"{s}.parquet") for s in SPLITS}
        rows: dict[str, list[float]] = {"read_raw": [], "raw_gate": [], "split_gate": [], "total": []}
        for i in range(args.repeats):
            t0 = time.perf_counter()
            frame, problems = read_table(source, fmt, d.delimiter, d.encoding)
            t1 = time.perf_counter()
            raw = validate_raw(frame, raw_contract, fmt, problems, Path(tmp) / f"raw-docs-{i}")
            t2 = time.perf_counter()
            splits = validate_splits(frames, split_contract, count, Path(tmp) / f"split-docs-{i}")
            t3 = time.perf_counter()
            assert raw.success and splits.success, (raw.failures, splits.failures)
            for key, value in (("read_raw", t1 - t0), ("raw_gate", t2 - t1), ("split_gate", t3 - t2),
                               ("total", t3 - t0)):
                rows[key].append(round(value, 3))
            print(f"repeat {i + 1}: read {t1 - t0:.2f} s, raw gate {t2 - t1:.2f} s, split gate {t3 - t2:.2f} s")
    result = {
        "data": d.source, "raw_rows": len(frame), "split_rows": {s: len(f) for s, f in frames.items()},
        "expectations": {"raw": raw.evaluated, "splits": splits.evaluated},
        "repeats": args.repeats, "seconds": rows,
        "median_seconds": {k: round(statistics.median(x), 3) for k, x in rows.items()},
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }
    m = result["median_seconds"]
    print(f"\nmedian of {args.repeats}: read {m['read_raw']:.2f} s + raw gate {m['raw_gate']:.2f} s "
          f"({raw.evaluated} expectations, {len(frame):,} rows) + split gate {m['split_gate']:.2f} s "
          f"({splits.evaluated} expectations, {sum(len(f) for f in frames.values()):,} rows) = {m['total']:.2f} s")
    out = Path("bench/results/validation.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
