"""Canary releases: the sequential test and the decision (pure), the split, the outcome store
and its recorder (real SQLite), canary start/stop under the reviewers' identity rules (a real
MLflow registry), and `adaptflow serve` over real HTTP splitting traffic, recording outcomes and
following a rollback made by the real check. The same with two replicas, PostgreSQL, an MLflow
and a Prefect server: tests/test_canary_live.py."""
from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from mlflow.tracking import MlflowClient

from conftest import fresh_store

import mlflow
from tasks.config import CanarySettings, PolicySettings, ServingSettings
from tasks.outcomes.recorder import Recorder
from tasks.outcomes.store import Outcome, OutcomeStore
from tasks.registry import canary
from tasks.registry.canary_state import SHARE_TAG, canary_state
from tasks.registry.errors import GovernanceError
from tasks.registry.governance import history, promote
from tasks.release.check import check_canary
from tasks.release.decide import SignalCounts, decide
from tasks.release.sequential import compare_rates, naive_z_worse
from tasks.serving.routing import CanaryRoute, bucket, goes_to_canary
from tasks.serving.run import start_in_thread
from tasks.serving.service import Service

MODEL = "reviews-canary"
POLL = 0.5
SIGNALS = ("error", "slow", "policy_blocked", "abstained")
# The worse canary trips the output policy: it answers with a label the policy keeps from users.
POLICY = PolicySettings(deny={"unreviewed": "^positive$"})
PAGES: list[Path] = []   # evidence pages the checks wrote (opened in a browser at the end)
QUICK = CanarySettings(min_requests_rollback=40, min_requests_ready=60, min_minutes_ready=0, tolerance=0.2)


# ---- the test and the decision (pure) -------------------------------------------------
def counts(n: int, **x: int) -> dict[str, SignalCounts]:
    return {s: SignalCounts(n, x.get(s, 0)) for s in SIGNALS}


def test_the_sequential_test_tolerates_many_looks_where_a_z_test_does_not():
    """An equal canary checked at 200 looks: the z-test re-run at every look rolls back far more
    often than its level; the always-valid test stays under it (bench/canary.py: 1,000 streams)."""
    rng = np.random.default_rng(7)
    seq = naive = 0
    for _ in range(100):
        cn = bn = cx = bx = 0
        hit_seq = hit_naive = False
        for _ in range(200):
            c = int(rng.binomial(250, 0.1))
            cn, bn = cn + c, bn + 250 - c
            cx, bx = cx + int(rng.binomial(c, 0.05)), bx + int(rng.binomial(250 - c, 0.05))
            hit_seq |= compare_rates(cx, cn, bx, bn, 0.05, 0.05).worse
            hit_naive |= naive_z_worse(cx, cn, bx, bn, 0.05)
        seq, naive = seq + hit_seq, naive + hit_naive
    assert seq <= 5 and naive >= 20, (seq, naive)
    assert compare_rates(60, 300, 50, 3000, 0.05, 0.05).worse            # 20 % vs 1.7 %
    assert not compare_rates(0, 0, 5, 100, 0.05, 0.05).worse and math.isinf(compare_rates(0, 0, 5, 100, 0.05, 0.05).radius)


def test_each_decision_and_why():
    s = QUICK
    worse = decide(counts(50, policy_blocked=50), counts(500), s, minutes=1)
    assert worse.action == "rollback" and "policy-block rate" in worse.reason and worse.tests["policy_blocked"].worse
    assert decide(counts(30, policy_blocked=30), counts(300), s, 1).action == "hold"   # under min_requests_rollback
    assert "no rollback before 40" in decide(counts(30, policy_blocked=30), counts(300), s, 1).reason
    assert decide(counts(50), counts(500), s, 1).action == "hold"                       # under min_requests_ready
    ready = decide(counts(600, error=1), counts(6000, error=10), s, minutes=5)
    assert ready.action == "ready" and "ready for a reviewer" in ready.reason
    tight = CanarySettings(min_requests_rollback=40, min_requests_ready=60, min_minutes_ready=0, tolerance=0.001)
    assert decide(counts(600, error=1), counts(6000, error=10), tight, 5).action == "hold"
    assert decide(counts(600), counts(6000), CanarySettings(min_minutes_ready=30), 5).action == "hold"
    failed = decide({}, {}, s, 0.5, ["@canary: BaseModelError: fingerprint"])
    assert failed.action == "rollback" and "failed to load" in failed.reason


def test_the_split_is_sticky_honours_the_share_and_only_grows():
    route = CanaryRoute("7", 0.1)
    keys = [f"user-{i}" for i in range(20_000)]
    chosen = {k for k in keys if goes_to_canary(MODEL, route, k, random.Random(0))}
    n, p = len(keys), 0.1
    assert abs(len(chosen) - n * p) < 4 * math.sqrt(n * p * (1 - p)), len(chosen)   # binomial bounds, 4 sigma
    again = {k for k in keys if goes_to_canary(MODEL, route, k, random.Random(1))}
    assert again == chosen                                                          # sticky
    wider = {k for k in keys if goes_to_canary(MODEL, CanaryRoute("7", 0.2), k, random.Random(0))}
    assert chosen <= wider                                                          # raising the share only adds
    assert bucket(MODEL, "8", "user-1") != bucket(MODEL, "7", "user-1")              # a new canary re-deals
    rng = random.Random(3)
    keyless = sum(goes_to_canary(MODEL, route, None, rng) for _ in range(20_000))
    assert abs(keyless - n * p) < 4 * math.sqrt(n * p * (1 - p))
    assert not goes_to_canary(MODEL, None, "user-1", rng)


# ---- the outcome store and its recorder ------------------------------------------------
def outcome(i: int, arm: str = "champion", version: str = "1", **kw) -> Outcome:
    return Outcome(request_id=f"r{i}", at=time.time(), replica="test", model=MODEL, version=version, arm=arm,
                   routed=True, route="predict", status=kw.pop("status", 200), latency_ms=kw.pop("latency_ms", 5.0),
                   texts=1, answers=["negative"], **kw)


def test_the_recorder_buffers_while_the_store_is_down_then_writes_everything(tmp_path):
    folder = tmp_path / "store"
    folder.write_text("not a folder: SQLite cannot open a database under it")
    recorder = Recorder(OutcomeStore(f"sqlite:///{folder / 'outcomes.db'}"), buffer_rows=5, retention_days=1).start()
    try:
        results = [recorder.record(outcome(i)).result(10) for i in range(8)]
        assert results == [False] * 8                       # answered anyway, nothing waited past its write
        assert recorder.counts.dropped == 3 and recorder.counts.failures >= 1 and recorder.pending == 5
        folder.unlink()
        folder.mkdir()                                      # the store comes back
        deadline = time.monotonic() + 30
        while recorder.pending and time.monotonic() < deadline:   # the writer retries on its own
            time.sleep(0.1)
        assert recorder.pending == 0
    finally:
        recorder.stop()
    rows = OutcomeStore(f"sqlite:///{folder / 'outcomes.db'}").outcomes(MODEL, since=0)
    assert {"r3", "r4", "r5", "r6", "r7"} <= {r.request_id for r in rows}   # the 5 newest buffered rows survived
    assert not {"r0", "r1", "r2"} & {r.request_id for r in rows}            # the 3 oldest dropped, and counted


def test_rows_are_committed_before_the_future_says_so_and_retention_prunes(tmp_path):
    url = f"sqlite:///{tmp_path / 'o.db'}"
    recorder = Recorder(OutcomeStore(url), buffer_rows=100, retention_days=1).start()
    assert all(recorder.record(outcome(i)).result(10) for i in range(20))
    assert len(OutcomeStore(url).outcomes(MODEL, since=0)) == 20   # another connection sees them: committed
    recorder.stop()
    store = OutcomeStore(url)
    store.write([Outcome(**{**outcome(99).__dict__, "at": time.time() - 3 * 86400})])
    assert store.prune(time.time() - 86400) == 1 and len(store.outcomes(MODEL, since=0)) == 20


# ---- a real registry with tiny versions -----------------------------------------------
@pytest.fixture(scope="module")
def registry(tmp_path_factory, tiny_bert):
    """v1 @champion: LoRA that learned to answer "negative"; v2: LoRA that answers "positive" (the
    policy blocks it); v3: like v1 with another seed (an equal canary); v4: recorded on another
    base (cannot load)."""
    from test_serving import register_version

    from tasks.models.base import load_base

    saved_uri = os.environ.pop("MLFLOW_TRACKING_URI", None)
    root = tmp_path_factory.mktemp("canary")
    uri = fresh_store(root)
    experiment = mlflow.create_experiment("canary", artifact_location=(root / "artifacts").as_uri())
    base = load_base(str(tiny_bert))
    negative, positive = [0] * 16, [1] * 16
    for seed, labels, fingerprint in [(1, negative, None), (2, positive, None), (3, negative, None),
                                      (4, negative, "f" * 64)]:
        register_version(root, base, MODEL, "lora", seed, experiment, fingerprint, labels=labels, epochs=5,
                         learning_rate=1e-2)
    client = MlflowClient()
    promote(client, uri, MODEL, "ana", "first release", version="1")
    yield root, uri, client
    if saved_uri is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved_uri


def test_canary_start_and_stop_follow_the_reviewers_rules(registry):
    _, uri, client = registry
    with pytest.raises(GovernanceError, match="pipeline's account"):
        canary.start(client, uri, MODEL, "2", 0.1, "svc-pipeline", "try", pipeline_account="svc-pipeline")
    with pytest.raises(GovernanceError, match="--reason"):
        canary.start(client, uri, MODEL, "2", 0.1, "ana", " ")
    with pytest.raises(GovernanceError, match="already"):
        canary.start(client, uri, MODEL, "1", 0.1, "ana", "the champion itself")
    with pytest.raises(GovernanceError, match="between 0 and 1"):
        canary.start(client, uri, MODEL, "2", 1.5, "ana", "too much")
    with pytest.raises(GovernanceError, match="no canary running"):
        canary.stop(client, uri, MODEL, "ana", "nothing to stop")
    entry = canary.start(client, uri, MODEL, "2", 0.25, "ana", "try v2 on a quarter")
    assert (entry.action, entry.version, entry.previous, entry.share) == ("canary_start", "2", "1", 0.25)
    assert canary_state(client, MODEL).share == 0.25 and str(client.get_registered_model(MODEL).aliases["canary"]) == "2"
    with pytest.raises(GovernanceError, match="already has a canary, v2"):
        canary.start(client, uri, MODEL, "3", 0.1, "ben", "a second one")
    with pytest.raises(GovernanceError, match="pipeline's account"):
        canary.stop(client, uri, MODEL, "svc-pipeline", "stop", pipeline_account="svc-pipeline")
    stopped = canary.stop(client, uri, MODEL, "ben", "enough")
    assert stopped.action == "canary_stop" and canary_state(client, MODEL) is None
    assert client.get_registered_model(MODEL).tags[SHARE_TAG] == "0" and "canary" not in client.get_registered_model(MODEL).aliases
    found = history(client, MODEL)
    assert found.problems == [] and [e.action for e in found.entries][-2:] == ["canary_start", "canary_stop"]
    assert found.champion == "1"   # a canary never moves @champion


def test_the_check_key_signs_a_canary_rollback_and_nothing_else(registry, monkeypatch):
    """The pipeline's process holds only ADAPTFLOW_CANARY_CHECK_KEY: an entry it signs counts only
    when it stops a canary; a promotion signed with it is reported as forged and never replayed."""
    from tasks.registry.audit import check_key, create_claim, read_claims
    from tasks.registry.governance import AuditEntry, written

    _, uri, client = registry
    seq = read_claims(client, MODEL)[-1].seq + 1
    forged = AuditEntry(seq=seq, action="promote", version="2", previous="1", reviewer="svc-pipeline", reason="sneaky",
                        at="2026-12-05T00:00:00+00:00")
    assert create_claim(client, MODEL, seq, written(forged, MODEL, check_key()))
    found = history(client, MODEL)
    assert any(f"entry {seq}" in p and "not signed" in p for p in found.problems), found.problems
    assert found.champion == "1" and "2" not in [e.version for e in found.entries if e.action == "promote"]
    client.delete_registered_model(f"{MODEL}.audit.{seq:06d}")   # leave the history as it was for the next tests


@pytest.fixture(scope="module")
def served(registry, tmp_path_factory):
    """A replica with the outcome store (SQLite), polling every 0.5 s, behind the test policy."""
    root, uri, client = registry
    url = f"sqlite:///{root / 'outcomes.db'}"
    service = Service([MODEL], ServingSettings(poll_seconds=POLL, max_texts=8, batch_wait_ms=2), policy=POLICY,
                      recorder=Recorder(OutcomeStore(url), 1000, 1), replica="replica-a").start()
    running = start_in_thread(service)
    yield running, OutcomeStore(url)
    running.stop()


SESSIONS = threading.local()   # one keep-alive connection per client thread, as real clients hold


def ask(url: str, key: str | None = None, text: str = "a fine film", **extra) -> requests.Response:
    body = {"model": MODEL, "texts": [text], **({"client": key} if key else {}), **extra}
    if not hasattr(SESSIONS, "session"):
        SESSIONS.session = requests.Session()
    return SESSIONS.session.post(f"{url}/predict", json=body, timeout=30)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def canary_of(url: str):
    return requests.get(f"{url}/health", timeout=30).json()["models"][MODEL]["canary"]


def test_traffic_splits_sticky_records_outcomes_and_a_worse_canary_is_rolled_back(served, registry, tmp_path):
    running, store = served
    _, uri, client = registry
    canary.start(client, uri, MODEL, "2", 0.3, "ana", "v2 on 30 %")
    wait_for(lambda: canary_of(running.url), 20 * POLL, "the replica follows the canary")
    keys = [f"user-{i}" for i in range(120)]
    first = {k: ask(running.url, k) for k in keys}
    assert all(r.status_code == 200 for r in first.values()), {r.status_code: r.text for r in first.values()}
    ids = [r.json()["request_id"] for r in first.values()]
    assert len(set(ids)) == len(ids) and all(r.headers["x-request-id"] == r.json()["request_id"] for r in first.values())
    arms = {k: (r.json()["version"], r.json()["alias"]) for k, r in first.items()}
    assert set(arms.values()) == {("1", "champion"), ("2", "canary")}
    header = {k: SESSIONS.session.post(f"{running.url}/predict", json={"model": MODEL, "texts": ["ok"]},
                               headers={"X-Adaptflow-Client": k}, timeout=30).json()["version"] for k in keys[:40]}
    assert header == {k: arms[k][0] for k in keys[:40]}                     # the same key, the same version
    assert ask(running.url, "user-0", alias="champion").json()["version"] == "1"   # naming an alias skips the split
    rows = {r.request_id: r for r in store.outcomes(MODEL, since=0)}
    assert set(ids) <= set(rows)                                            # durable before each 200
    canary_rows = [rows[i] for i, (v, _) in zip(ids, arms.values()) if v == "2"]
    assert all(r.routed and r.arm == "canary" and r.blocked == 1 for r in canary_rows), [(r.arm, r.routed, r.blocked, r.answers) for r in canary_rows]
    metrics = requests.get(f"{running.url}/metrics", timeout=30).text
    assert f'adaptflow_version_signals_total{{model="{MODEL}",signal="policy_blocked",version="2"}}' in metrics
    assert f'adaptflow_canary_share{{model="{MODEL}"}} 0.3' in metrics

    # Traffic keeps flowing while the real check judges the canary and rolls it back.
    stop, failed, answered = threading.Event(), [], []

    def traffic():
        i = 0
        while not stop.is_set():
            r = ask(running.url, f"live-{i}")
            (answered if r.status_code == 200 else failed).append(r.status_code)
            i += 1

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        wait_for(lambda: sum(1 for r in store.outcomes(MODEL, since=0) if r.arm == "canary") >= QUICK.min_requests_rollback,
                 120, "enough canary requests")
        result = check_canary(client, uri, MODEL, QUICK, store, tmp_path / "pages")
        assert result.action == "rollback" and "policy-block rate" in result.reason, result.line()
        wait_for(lambda: canary_of(running.url) is None, 20 * POLL, "the replica drops the canary")
        after = [ask(running.url, f"user-{i}").json()["version"] for i in range(60)]
    finally:
        stop.set()
        thread.join()
    assert set(after) == {"1"} and not failed and answered, failed
    entry = history(client, MODEL).entries[-1]
    assert (entry.action, entry.version, entry.evidence["tests"]["policy_blocked"]["worse"]) == ("canary_rollback", "2", True)
    assert "canary check" in entry.identity_source and history(client, MODEL).problems == []
    run_id = client.get_model_version(MODEL, "2").run_id
    assert "rolled back" in client.get_run(run_id).data.tags["adaptflow.canary"]
    print(f"\nrolled back after {result.decision.canary_requests} canary / {result.decision.champion_requests} champion "
          f"requests: {result.reason}; {len(answered)} requests during the check and rollback, {len(failed)} failed")
    PAGES.append(result.page)
    page = result.page.read_text()
    assert "Decision: rollback" in page and page.count("data:image/png;base64,") == 3


def test_a_canary_that_cannot_load_is_rolled_back_with_that_reason(served, registry, tmp_path):
    running, store = served
    _, uri, client = registry
    canary.start(client, uri, MODEL, "4", 0.2, "ana", "v4 (another base)")
    started = canary_state(client, MODEL).started
    wait_for(lambda: store.events(MODEL, since=started, kind="refused"), 20 * POLL, "the refusal is recorded")
    assert all(ask(running.url, f"user-{i}").status_code == 200 for i in range(20))   # nobody gets v4
    result = check_canary(client, uri, MODEL, QUICK, store, tmp_path / "pages")
    assert result.action == "rollback" and "failed to load" in result.reason and "fingerprint" in result.reason, (
        result.line(), [(e.at, e.version, e.kind) for e in store.events(MODEL, since=0)], canary_state(client, MODEL))
    assert canary_state(client, MODEL) is None


def test_an_equal_canary_becomes_ready_and_auto_promote_is_audited(served, registry, tmp_path):
    running, store = served
    _, uri, client = registry
    canary.start(client, uri, MODEL, "3", 0.5, "ana", "v3: retrained, same data")
    wait_for(lambda: (canary_of(running.url) or {}).get("version") == "3", 20 * POLL, "the replica follows v3")
    for i in range(200):
        assert ask(running.url, f"eq-{i}").status_code == 200
    held = check_canary(client, uri, MODEL, CanarySettings(min_requests_rollback=40, min_requests_ready=10_000),
                        store, tmp_path / "pages")
    assert held.action == "hold" and canary_state(client, MODEL).version == "3"
    # A wide tolerance: 100 canary requests bound a rate gap to about +-20 points, and the latencies of a
    # loaded 2-core machine are noisy; what is tested here is the path from ready to an audited promotion.
    auto = CanarySettings(min_requests_rollback=40, min_requests_ready=60, min_minutes_ready=0, tolerance=0.5,
                          auto_promote=True)
    promoted = check_canary(client, uri, MODEL, auto, store, tmp_path / "pages")
    assert promoted.action == "promoted", promoted.line()
    found = history(client, MODEL)
    assert [e.action for e in found.entries][-2:] == ["promote", "canary_stop"] and found.champion == "3"
    assert "auto_promote" in found.entries[-2].identity_source and found.problems == []
    evidence = json.loads(client.get_model_version(MODEL, "3").tags["canary.evidence"])
    assert evidence["action"] == "ready" and evidence["canary_requests"] >= 60


def test_the_canary_page_opens_in_a_real_browser(served, registry, tmp_path):
    from report_browser import chromium, figure_sizes

    if chromium() is None:
        pytest.skip("chromium is not installed (make system-packages)")
    assert PAGES, "the rollback test wrote its page"
    sizes = figure_sizes(PAGES[0])
    assert len(sizes) == 3 and all(w > 200 and h > 100 for _, w, h in sizes), sizes
