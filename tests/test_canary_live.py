"""A canary over real HTTP with real servers: PostgreSQL (the outcome store), an MLflow server with
basic-auth (the registry; a reviewer account starts canaries, the pipeline's account runs the
check), a Prefect server (every check is a flow run on it), and two `adaptflow serve` replicas
(processes of their own) sharing the outcome store.

- A worse canary (its answers trip the output policy) is rolled back by the check while traffic
  flows through both replicas; one replica is killed mid-canary and the other keeps the split;
  no answered request fails.
- An equal canary (the champion's recipe with another seed) survives 20 checks.
- The outcome store going down never fails a request; its rows are written when it is back.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml
from conftest import ROOT, auth_mlflow_server, env_for_subprocess
from postgres_cluster import pg_bin, start_postgres
from test_canary import POLICY, SESSIONS, wait_for
from mlflow.tracking import MlflowClient

import mlflow
from tasks.ops.servers import ServerError, free_port, start_prefect

MODEL = "reviews-live"
ADMIN = ("admin", "admin-secret-1234")
PIPELINE = ("svc-pipeline", "pipeline-secret-1234")
ADAPTFLOW = str(Path(sys.executable).parent / "adaptflow")
TEXTS = ["great film", "awful film", "loved it", "hated it", "a joy", "a mess", "superb", "boring", "fine", "dull"]
ROLLED_BACK = ": rollback: "   # the check's line for a rollback (a hold's reason may mention rollbacks)
CANARY = {"alpha": 0.05, "effect_size": 0.05, "min_requests_rollback": 40, "min_requests_ready": 200,
          "min_minutes_ready": 0, "tolerance": 0.05}


def sign_in(account: tuple[str, str]) -> None:
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = account


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_bert):
    from mlflow.server.auth.client import AuthServiceClient
    from test_serving import register_version

    from tasks.models.base import load_base

    try:
        pg_bin("initdb")
    except ServerError as exc:
        pytest.skip(f"{exc} (make test installs it when run as root)")
    root = tmp_path_factory.mktemp("canary-live")
    pg_folder = Path(tempfile.mkdtemp(prefix="adaptflow-pg-"))   # in /tmp: reachable by the postgres OS user
    pg = start_postgres(pg_folder, free_port())
    pg.create_database("outcomes")
    prefect = start_prefect(free_port(), root / "prefect")
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                                            "MLFLOW_TRACKING_PASSWORD", "PREFECT_API_URL")}
    (root / "mlflow").mkdir()
    try:
        with auth_mlflow_server(root / "mlflow", ADMIN) as url:
            prefect.wait_healthy()
            os.environ["MLFLOW_TRACKING_URI"], os.environ["PREFECT_API_URL"] = url, prefect.url
            sign_in(ADMIN)
            mlflow.set_tracking_uri(url)
            auth = AuthServiceClient(url)
            auth.create_user(*PIPELINE)
            experiment = mlflow.create_experiment("canary-live")
            base = load_base(str(tiny_bert))
            for seed, label in [(1, 0), (2, 1), (3, 0)]:   # v1 "negative", v2 "positive" (blocked), v3 like v1
                register_version(root, base, MODEL, "lora", seed, experiment, labels=[label] * 16, epochs=5,
                                 learning_rate=1e-2)
            auth.grant_user_permission(PIPELINE[0], "registered_model", MODEL, "EDIT")
            auth.grant_user_permission(PIPELINE[0], "experiment", experiment, "EDIT")   # its runs, as when it trained them
            client = MlflowClient(url, url)
            from tasks.registry.governance import promote

            promote(client, url, MODEL, None, "first release", version="1", pipeline_account=PIPELINE[0])
            params = yaml.safe_load((ROOT / "params.yaml").read_text())
            params["project"].update(registered_model=MODEL, pipeline_account=PIPELINE[0])
            params["serving"].update(poll_seconds=0.5, max_texts=8)
            params["policy"] = {"deny": dict(POLICY.deny)}
            params["outcomes"] = {"store": pg.url("outcomes", "postgresql+psycopg2"), "write_timeout_ms": 300}
            params["canary"] = dict(CANARY)
            (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            replicas = [start_replica(root, f"replica-{i}") for i in range(2)]
            try:
                yield {"root": root, "url": url, "client": client, "pg": pg, "replicas": replicas}
            finally:
                for proc, _, _ in replicas:
                    if proc.poll() is None:
                        proc.terminate()
                        proc.wait(60)
    finally:
        prefect.stop()
        pg.stop()
        subprocess.run(["rm", "-rf", str(pg_folder)])
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def start_replica(root: Path, name: str):
    port = free_port()
    log = root / f"{name}.log"
    proc = subprocess.Popen([ADAPTFLOW, "serve", "--models", MODEL, "--params", str(root / "params.yaml"),
                             "--port", str(port)], env=env_for_subprocess(), cwd=root,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if requests.get(f"{url}/health", timeout=5).status_code == 200:
                return proc, url, log
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{name} did not start:\n{log.read_text()[-3000:]}")


def drive(urls: list[str], n: int, prefix: str, tally: dict) -> None:
    """n requests, each from its own client key, round-robin over the replicas."""
    for i in range(n):
        url = urls[i % len(urls)]
        r = SESSIONS.__dict__.setdefault("live", requests.Session()).post(
            f"{url}/predict", json={"model": MODEL, "texts": [TEXTS[i % len(TEXTS)]], "client": f"{prefix}-{i}"},
            timeout=30)
        tally.setdefault("status", []).append(r.status_code)
        if r.status_code == 200:
            tally.setdefault("versions", []).append((url, r.json()["version"]))


def check(root: Path):
    """One canary-check flow run on the Prefect server, as the pipeline's account."""
    from flows.canary import canary_check
    from flows.inputs import CanaryCheckInput
    from tasks.config import load_settings
    from tasks.registry.canary_state import canary_state

    sign_in(PIPELINE)
    reviewers_key = os.environ.pop("ADAPTFLOW_AUDIT_KEY")   # the pipeline holds only the check's key
    try:
        state = canary_check(CanaryCheckInput(models=[MODEL], params_file=str(root / "params.yaml")),
                             return_state=True)
        assert state.is_completed(), state
        return state.result()
    finally:
        os.environ["ADAPTFLOW_AUDIT_KEY"] = reviewers_key
        sign_in(ADMIN)


def start_canary(world, version: str, share: float):
    from tasks.registry import canary

    canary.start(world["client"], world["url"], MODEL, version, share, None, f"v{version} on {share:.0%}",
                 pipeline_account=PIPELINE[0])
    for _, url, _ in (r for r in world["replicas"] if r[0].poll() is None):
        wait_for(lambda: requests.get(f"{url}/health", timeout=10).json()["models"][MODEL]["canary"], 30,
                 f"{url} follows the canary")


def test_a_worse_canary_is_rolled_back_through_two_replicas_one_of_them_killed(world):
    from tasks.registry.governance import history

    start_canary(world, "2", 0.3)
    urls = [url for _, url, _ in world["replicas"]]
    tally: dict = {}
    drive(urls, 40, "a", tally)
    first = check(world["root"])
    assert ": hold:" in first, first
    victim = world["replicas"][1][0]
    victim.send_signal(signal.SIGKILL)   # mid-canary: the other replica keeps the split
    victim.wait(30)
    alive, before_kill = urls[:1], len(tally["status"])
    checks, line = 1, first
    while ROLLED_BACK not in line and checks < 40:
        drive(alive, 40, f"b{checks}", tally)
        line, checks = check(world["root"]), checks + 1
    assert ROLLED_BACK in line, line
    after_kill = {v for u, v in tally["versions"][before_kill:]}
    assert after_kill == {"1", "2"}, (after_kill, first, line)   # the surviving replica still split champion and canary
    wait_for(lambda: requests.get(f"{alive[0]}/health", timeout=10).json()["models"][MODEL]["canary"] is None, 30,
             "the replica drops the rolled-back canary")
    drive(alive, 60, "c", tally)
    assert {v for _, v in tally["versions"][-60:]} == {"1"}
    assert set(tally["status"]) == {200}, sorted(set(tally["status"]))   # no answered request failed
    entry = history(world["client"], MODEL).entries[-1]
    assert entry.action == "canary_rollback" and entry.reviewer == PIPELINE[0]
    assert history(world["client"], MODEL).problems == []
    tests = entry.evidence["tests"]["policy_blocked"]
    print(f"\nrolled back at check {checks} after {len(tally['status']) - 60} requests through the replicas "
          f"({tests['canary_n']} canary, {tests['champion_n']} champion): policy-block {tests['canary_x']}/"
          f"{tests['canary_n']} vs {tests['champion_x']}/{tests['champion_n']}, log LR {tests['log_lr']:.2f} >= "
          f"boundary {tests['boundary']:.2f}; audit entry: {entry.line()}; failed answers: 0 of {len(tally['status'])}")


def test_an_equal_canary_survives_twenty_checks(world):
    start_canary(world, "3", 0.3)
    alive = [url for proc, url, _ in world["replicas"] if proc.poll() is None]
    tally: dict = {}
    lines = []
    for i in range(20):
        drive(alive, 20, f"eq{i}", tally)
        lines.append(check(world["root"]))
    assert not [l for l in lines if ROLLED_BACK in l], lines
    assert set(tally["status"]) == {200}
    print(f"\nequal canary: 20 checks over {len(tally['status'])} requests, no rollback; last: {lines[-1]}")


def test_serving_keeps_answering_while_the_outcome_store_is_down(world):
    alive = [url for proc, url, _ in world["replicas"] if proc.poll() is None][0]
    pg = world["pg"]
    pg.stop()
    tally: dict = {}
    try:
        drive([alive], 30, "down", tally)
        metrics = requests.get(f"{alive}/metrics", timeout=10).text
        pending = float(next(l.split()[-1] for l in metrics.splitlines() if l.startswith("adaptflow_outcomes_pending")))
    finally:
        pg.start()
    assert set(tally["status"]) == {200} and pending >= 30, (tally, pending)

    def written() -> bool:
        text = requests.get(f"{alive}/metrics", timeout=10).text
        return float(next(l.split()[-1] for l in text.splitlines() if l.startswith("adaptflow_outcomes_pending"))) == 0

    wait_for(written, 60, "the buffered rows are written once the store is back")
    from tasks.outcomes.store import OutcomeStore

    rows = OutcomeStore(pg.url("outcomes", "postgresql+psycopg2")).outcomes(MODEL, since=0)
    assert sum(1 for r in rows if r.arm != "pinned" and r.answers and r.request_id) >= 30
