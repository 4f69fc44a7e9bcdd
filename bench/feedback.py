"""POST /feedback under load, and nothing acknowledged lost when a replica is killed.

  .venv/bin/python bench/feedback.py [--clients 8] [--requests 2000] [--kill-after 3]

A replica (`tasks.serving` over real HTTP, uvicorn, in a child process) with a SQLite outcome
store holding --requests answered requests' texts (written directly: the feedback path does not
touch the model, so the registered model has no version loaded).
- Latency: --clients threads send one feedback each for every stored request (distinct client
  keys, so no per-client rule refuses them); p50/p95/p99 of the round trip, and the 200s.
- Kill: a fresh replica; the same clients send feedback until the replica is SIGKILLed after
  --kill-after seconds; then the 200 answers the clients got and the feedback rows the store
  holds for those requests are counted (every 200 must be a stored row).
Writes bench/results/feedback.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import os
import platform
import signal
import subprocess
import tempfile
import threading
import time

MODEL = "bench-feedback"
LABELS = ["negative", "positive"]


def replica(root: Path, port: int) -> None:
    """The child: serve until killed."""
    from tasks.config import FeedbackSettings, ServingSettings
    from tasks.outcomes.recorder import Recorder
    from tasks.outcomes.store import OutcomeStore
    from tasks.serving.run import start_in_thread
    from tasks.serving.service import Service
    from tasks.tracking import use_store

    use_store(root)
    service = Service([MODEL], ServingSettings(poll_seconds=60), replica=f"bench:{port}", feedback=FeedbackSettings(),
                      recorder=Recorder(OutcomeStore(f"sqlite:///{root / 'outcomes.db'}"), 1000, 14, store_texts=True))
    start_in_thread(service.start(), port=port)
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def setup(root: Path, n: int, offset: int = 0) -> list[str]:
    from mlflow.tracking import MlflowClient

    from tasks.outcomes.store import OutcomeStore, RequestText
    from tasks.tracking import use_store

    use_store(root)
    client = MlflowClient()
    if not client.search_registered_models(f"name = '{MODEL}'"):
        client.create_registered_model(MODEL)
    store = OutcomeStore(f"sqlite:///{root / 'outcomes.db'}")
    ids = [f"{offset + i:032x}" for i in range(n)]
    store.write([], texts=[RequestText(rid, time.time(), MODEL, "1", "classification", [f"review text number {offset + i}"],
                                       ["positive"], LABELS) for i, rid in enumerate(ids)])
    store.dispose()
    return ids


def start_replica(root: Path) -> tuple[subprocess.Popen, str]:
    from tasks.serving.run import free_port

    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--replica", str(root), str(port)], stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert child.stdout.readline().strip() == b"ready", "the replica did not start"
    return child, f"http://127.0.0.1:{port}"


def send_all(url: str, ids: list[str], clients: int, stop: threading.Event | None = None, phase: str = ""):
    """Each client alternates the two labels (one label only would be a flood: 429 past 50 rows)."""
    import requests

    latencies, answers, lock = [], {}, threading.Lock()

    def client(k: int) -> None:
        session = requests.Session()
        for j, rid in enumerate(ids[k::clients]):
            if stop is not None and stop.is_set():
                return
            start = time.perf_counter()
            try:
                r = session.post(f"{url}/feedback", json={"request_id": rid, "label": LABELS[j % 2],
                                                          "client": f"client-{phase}{k}"}, timeout=30)
                status = r.status_code
            except requests.RequestException:
                status = None   # the replica died mid-request: not acknowledged
            with lock:
                latencies.append(time.perf_counter() - start)
                answers[rid] = status

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    return threads, latencies, answers


def stored(root: Path, ids: list[str]) -> set[str]:
    from tasks.outcomes.feedback import feedback_rows
    from tasks.outcomes.store import OutcomeStore

    store = OutcomeStore(f"sqlite:///{root / 'outcomes.db'}")
    rows = {r.request_id for r in feedback_rows(store, MODEL)}
    store.dispose()
    return rows & set(ids)


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    return platform.processor()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--kill-after", type=float, default=3.0)
    parser.add_argument("--replica", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replica:
        replica(Path(args.replica[0]), int(args.replica[1]))
        return 0
    import numpy as np

    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    out: dict = {"cpu": cpu(), "clients": args.clients, "load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ids = setup(root, args.requests)
        child, url = start_replica(root)
        try:
            start = time.perf_counter()
            threads, latencies, answers = send_all(url, ids, args.clients)
            for t in threads:
                t.join()
            seconds = time.perf_counter() - start
        finally:
            child.kill()
            child.wait()
        ms = np.array(latencies) * 1000
        ok = sum(s == 200 for s in answers.values())
        out["latency"] = {"requests": len(ms), "answered_200": ok, "seconds": round(seconds, 2),
                          "per_second": round(len(ms) / seconds, 1), "p50_ms": round(float(np.percentile(ms, 50)), 2),
                          "p95_ms": round(float(np.percentile(ms, 95)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
                          "stored": len(stored(root, ids))}
        print("latency:", out["latency"], flush=True)

        more = setup(root, args.requests * 5, offset=10 ** 6)
        child, url = start_replica(root)
        stop = threading.Event()
        threads, _, answers = send_all(url, more, args.clients, stop, phase="kill-")
        time.sleep(args.kill_after)
        stop.set()   # no new requests; those in flight meet the kill
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        for t in threads:
            t.join()
        acknowledged = {rid for rid, s in answers.items() if s == 200}
        rows = stored(root, more)
        out["kill"] = {"sent": len(answers), "answered_200": len(acknowledged), "rows_stored": len(rows),
                       "acknowledged_but_not_stored": len(acknowledged - rows),
                       "stored_but_not_acknowledged": len(rows - acknowledged),
                       "in_flight_at_kill_no_answer": sum(s is None for s in answers.values())}
        print("kill:", out["kill"], flush=True)
    out["load_average_at_end"] = os.getloadavg()
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "feedback.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
