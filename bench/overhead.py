"""Orchestration overhead and the end-to-end breakdown: `adaptflow run` (the `specialize` flow:
Prefect, MLflow, Great Expectations, DVC, one process per strategy, registry, report) against
bench/bare.py (the same training and evaluation calls, none of that), one after the other.

  .venv/bin/python bench/overhead.py [--profile NAME] [--strategies a,b] [--repeats N]

Without options this is `make demo`'s job (the default profile), minus `make setup`. Both run as
commands of their own, so both pay Python's start-up and imports. The forgetting probe's cached
base accuracy is made before either runs, so neither pays it. The flow's stages come from
Prefect's own task-run records (start and end times), read back after the run.

--repeats N: N pairs, flow then bare, and the median of their overheads (one strategy's time
varies by 2-3 s between runs on these machines, as much as the goal). In a fresh clone the first
flow also creates the project's Prefect and MLflow databases (Prefect's migrations: 9 s of its
server's CPU against 3 s once they exist), and DVC runs every stage; later runs find the
databases and, with the same data, the stages' outputs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, median, table, write  # noqa: E402


def warm_forgetting_cache(params: str, profile: str | None) -> None:
    from tasks.models.heads import Head
    from tasks.config import load_settings
    from tasks.evaluation.forgetting import base_probe_accuracy
    from tasks.models.base import load_base
    from tasks.training.hardware import check_hardware, evaluation_precision

    s = load_settings(params, profile)
    ev, base = s.evaluation, load_base(s.model.base, s.root)
    if ev.measures_forgetting:   # in the precision the runs will probe in
        base_probe_accuracy(str(base.path), base.fingerprint, Head.for_task(s.task, s.validation.labels),
                            ev.forgetting_train_examples, ev.forgetting_test_examples, ev.forgetting_max_length,
                            s.train.seed, evaluation_precision(check_hardware(s.train)))


@contextmanager
def prefect_api():
    """Prefect's API for reading the records, on a temporary server stopped as soon as they are
    read. The one Prefect starts by itself lived on in this process until it ended: beside the
    bare script, it took 4 s of CPU in the bare run's first minute (its start, then its services'
    loops), slowing the bare script and so understating the overhead. A server named by
    PREFECT_API_URL is used as it is."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    from tasks.ops.servers import free_port, start_temporary_prefect

    if PREFECT_API_URL.value():
        yield
        return
    server = start_temporary_prefect(free_port(), Path(PREFECT_HOME.value()) / "bench-server.log")
    try:
        server.wait_healthy(poll=0.1)
        with temporary_settings({PREFECT_API_URL: server.url}):
            yield
    finally:
        server.stop()


def stage(task_name: str) -> str:
    """A task run's stage: its name without Prefect's run suffix (`strategy: lora-3fa` -> `strategy: lora`)."""
    head, _, tail = task_name.rpartition("-")
    return head if head and len(tail) <= 4 else task_name


def is_demo(parameters: dict) -> bool:
    """A run of `make demo`'s job: the default params file, profile and strategies, no own data."""
    run = parameters.get("run") or {}
    return all(not run.get(k) for k in ("profile", "strategies", "data")) and \
        Path(run.get("params_file", "params.yaml")).name == "params.yaml"


def last_flow_breakdown(demo_only: bool = False) -> dict | None:
    """Seconds per stage of the most recent completed `specialize` flow run (or of the most
    recent one with the demo's parameters), from Prefect's records."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort

    done = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED])))
    with prefect_api(), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=done, sort=FlowRunSort.START_TIME_DESC, limit=200)
        runs = [r for r in runs if r.flow_id == runs[0].flow_id and (not demo_only or is_demo(r.parameters))] \
            if runs else []
        if not runs:
            return None
        flow_run = runs[0]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
                                      sort=TaskRunSort.EXPECTED_START_TIME_ASC)
    stages: dict[str, float] = {}
    for t in tasks:
        if t.start_time and t.end_time:
            stages[stage(t.name)] = stages.get(stage(t.name), 0.0) + (t.end_time - t.start_time).total_seconds()
    flow_seconds = (flow_run.end_time - flow_run.start_time).total_seconds()
    return {"flow_run": str(flow_run.id), "started": str(flow_run.start_time), "flow_seconds": flow_seconds,
            "stages": stages,
            "outside_tasks": flow_seconds - sum(stages.values())}


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env=os.environ.copy())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile")
    parser.add_argument("--strategies", help="comma-separated; default: strategies.run of the profile")
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs, flow then bare (default 1)")
    parser.add_argument("--demo-breakdown", action="store_true",
                        help="only print the stages of the latest run of the demo's job (`make demo`), if any")
    args = parser.parse_args()
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
    if args.demo_breakdown:
        demo = last_flow_breakdown(demo_only=True)
        if demo is None:
            print("no completed run of the demo's job in Prefect's records yet: run `make demo`")
            return
        rows = [{"stage": k, "seconds": v} for k, v in demo["stages"].items()]
        rows.append({"stage": "flow outside its tasks", "seconds": demo["outside_tasks"]})
        print(f"`make demo` job, flow run {demo['flow_run']} started {demo['started']}: "
              f"{demo['flow_seconds']:.0f} s\n" + table(rows))
        write("demo", demo)
        return
    params = str(ROOT / "params.yaml")
    warm_forgetting_cache(params, args.profile)
    options = (["--profile", args.profile] if args.profile else []) + \
        (["--strategies", args.strategies] if args.strategies else [])
    pairs = [one_pair(params, options) for _ in range(args.repeats)]
    for i, pair in enumerate(pairs, 1):
        print(f"\npair {i} of {len(pairs)}\n" + table(pair["rows"]))
        print(f"orchestration overhead: flow {pair['flow_seconds']:.1f} s vs bare script {pair['bare_seconds']:.1f} s "
              f"= {100 * pair['overhead']:+.1f} %")
    overhead = median([p["overhead"] for p in pairs])
    print(f"\norchestration overhead, median of {len(pairs)}: {100 * overhead:+.1f} % (goal: 5 % or less)")
    out = write("overhead", {"profile": args.profile or "default", "overhead": overhead, "pairs": pairs,
                             "flow_seconds": pairs[-1]["flow_seconds"], "bare_seconds": pairs[-1]["bare_seconds"]})
    print(f"wrote {out}")


def one_pair(params: str, options: list[str]) -> dict:
    """`adaptflow run`, then bench/bare.py, with the same options: wall times and stages."""
    adaptflow = str(Path(sys.executable).parent / "adaptflow")
    flow_s = timed([adaptflow, "run", "--params", params, *options])
    breakdown = last_flow_breakdown()
    with tempfile.TemporaryDirectory() as tmp:
        bare_json = Path(tmp) / "bare.json"
        bare_s = timed([sys.executable, str(ROOT / "bench" / "bare.py"), "--params", params, *options,
                        "--json", str(bare_json)])
        bare = json.loads(bare_json.read_text())
    rows = [{"stage": name, "flow_s": seconds,
             "bare_s": bare["strategies"].get(name.removeprefix("strategy: "), {}).get("seconds", "")}
            for name, seconds in breakdown["stages"].items()]
    rows += [{"stage": "flow outside its tasks", "flow_s": breakdown["outside_tasks"], "bare_s": ""},
             {"stage": "command outside its flow", "flow_s": flow_s - breakdown["flow_seconds"],
              "bare_s": bare_s - sum(v["seconds"] for v in bare["strategies"].values())},
             {"stage": "command wall time", "flow_s": flow_s, "bare_s": bare_s}]
    return {"flow_seconds": flow_s, "bare_seconds": bare_s, "overhead": flow_s / bare_s - 1, "rows": rows,
            "breakdown": breakdown, "bare": bare}


if __name__ == "__main__":
    main()
