"""The start-up bf16 measurement (tasks/training/cpu_precision.py: `auto` takes bf16 on a CPU where
a bf16 step runs at least train.cpu_bf16_min_speedup times fp32's) on a quiet CPU and while
Prefect's temporary server starts, as it did when `adaptflow run` started that server before its
checks. Pairs, one after the other. The run measures on one thread (PROBE_THREADS); --threads 2
shows why: a 2-thread step waits for the busier core.

  .venv/bin/python bench/precision_check.py [--repeats N] [--threads 1|2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, commit, median, table, write  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="pairs: quiet, then beside the server (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="default: the run's (one)")
    args = parser.parse_args()
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
    from tasks.ops.servers import free_port, start_temporary_prefect
    from tasks.training.cpu_precision import PROBE_THREADS, measure

    threads = args.threads or PROBE_THREADS

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            quiet = measure(threads).bf16_speedup
            server = start_temporary_prefect(free_port(), Path(tmp) / "server.log")
            try:
                beside = measure(threads).bf16_speedup
                server.wait_healthy(poll=0.1)
            finally:
                server.stop()
            time.sleep(1)   # the server's exit off the CPU before the next quiet measurement
            rows.append({"pair": i + 1, "quiet": quiet, "beside Prefect's server start": beside})
    print(table(rows))
    summary = {"quiet_median": median([r["quiet"] for r in rows]),
               "beside_server_median": median([r["beside Prefect's server start"] for r in rows])}
    print(f"bf16 speed-up over fp32, medians: quiet {summary['quiet_median']:.2f}x, beside Prefect's server start "
          f"{summary['beside_server_median']:.2f}x on {threads} thread(s) (commit {commit()})")
    print(f"wrote {write('precision_check', {'threads': threads, 'pairs': rows, **summary})}")


if __name__ == "__main__":
    main()
