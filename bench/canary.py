"""The canary check's error rates, by simulation: the real decision code (tasks/release/decide.py)
on synthetic outcome streams, checked once per window as the `canary-check` deployment does.

  .venv/bin/python bench/canary.py [--streams 1000] [--window 250] [--horizon 50000]

- False rollbacks: `--streams` equal canaries (every live signal at the champion's rate) per
  share, each checked after every `--window` requests up to `--horizon` requests; the share of
  streams ever rolled back (goal <= alpha, 5 %). The same streams through a naive rule (a
  one-sided z-test at the same per-guardrail level, re-run at every look) show why the
  sequential test is there.
- Detection: the requests (all traffic, champion and canary) until a canary whose policy-block
  rate is 2, 5 or 10 points above the champion's is rolled back, at shares 0.05, 0.1 and 0.25:
  median and 90th percentile (streams not caught within the horizon count as the horizon).
Writes bench/results/canary.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import time

import numpy as np

# Champion rates per live signal (classification's four): 1 % 5xx, 5 % over the champion's p95
# (by construction), 2 % policy blocks, 10 % abstentions: a served sentiment model's figures.
BASE = {"error": 0.01, "slow": 0.05, "policy_blocked": 0.02, "abstained": 0.10}
SHARES = (0.05, 0.1, 0.25)
DROPS = (0.02, 0.05, 0.10)


def stream(rng, share: float, canary_rates: dict, window: int, horizon: int, settings, rule: str) -> int | None:
    """Requests until the rule rolls the canary back (None: never within the horizon)."""
    from tasks.release.decide import SignalCounts, decide
    from tasks.release.sequential import naive_z_worse

    cn, bn = 0, 0
    cx = dict.fromkeys(BASE, 0)
    bx = dict.fromkeys(BASE, 0)
    per_signal_alpha = settings.alpha / len(BASE)
    for seen in range(window, horizon + 1, window):
        c = int(rng.binomial(window, share))
        b = window - c
        cn, bn = cn + c, bn + b
        for name in BASE:
            cx[name] += int(rng.binomial(c, canary_rates[name]))
            bx[name] += int(rng.binomial(b, BASE[name]))
        if rule == "sequential":
            d = decide({n: SignalCounts(cn, cx[n]) for n in BASE}, {n: SignalCounts(bn, bx[n]) for n in BASE},
                       settings, minutes=0.0)
            if d.action == "rollback":
                return seen
        elif cn >= settings.min_requests_rollback and any(
                naive_z_worse(cx[n], cn, bx[n], bn, per_signal_alpha) for n in BASE):
            return seen
    return None


def main() -> None:
    from bench.common import machine, write
    from tasks.config import CanarySettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--detect-streams", type=int, default=200)
    parser.add_argument("--window", type=int, default=250, help="requests (all traffic) between two checks")
    parser.add_argument("--horizon", type=int, default=50_000, help="requests (all traffic) a stream lasts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = CanarySettings()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    looks = args.horizon // args.window
    false_rollbacks = {}
    for share in SHARES:
        for rule in ("sequential", "naive"):
            rolled = sum(stream(rng, share, BASE, args.window, args.horizon, settings, rule) is not None
                         for _ in range(args.streams))
            false_rollbacks[f"{rule}@{share}"] = rolled / args.streams
            print(f"equal canary, share {share:.2f}, {rule:<10}: rolled back {rolled}/{args.streams} "
                  f"= {rolled / args.streams:.1%} over {looks} looks", flush=True)
    detection = {}
    for share in SHARES:
        for drop in DROPS:
            rates = {**BASE, "policy_blocked": BASE["policy_blocked"] + drop}
            caught = [stream(rng, share, rates, args.window, args.horizon, settings, "sequential")
                      for _ in range(args.detect_streams)]
            needed = np.array([c if c is not None else args.horizon for c in caught])
            missed = sum(c is None for c in caught)
            detection[f"{drop:.2f}@{share}"] = {"median": float(np.median(needed)),
                                                "p90": float(np.percentile(needed, 90)), "missed": missed}
            print(f"policy-block rate +{drop:.0%} at share {share:.2f}: requests to rollback median "
                  f"{np.median(needed):,.0f}, p90 {np.percentile(needed, 90):,.0f}"
                  + (f" ({missed} of {args.detect_streams} not caught within {args.horizon:,})" if missed else ""),
                  flush=True)
    out = write("canary", {"machine": machine(), "settings": settings.__dict__, "base_rates": BASE,
                           "window": args.window, "horizon": args.horizon, "streams": args.streams,
                           "detect_streams": args.detect_streams, "false_rollback_rate": false_rollbacks,
                           "requests_to_rollback": detection, "seconds": round(time.perf_counter() - started, 1)})
    print(f"wrote {out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
