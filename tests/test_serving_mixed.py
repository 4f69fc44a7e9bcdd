"""Mixed-adapter batches: requests for different LoRA versions on one base share a forward pass,
each text through its own adapter and head, and every answer equals its version served alone.
Strategies that cannot mix (IA3, prompt tuning in PEFT 0.21) keep one version per batch."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import requests
from conftest import fresh_store, saved_version
from mlflow.tracking import MlflowClient

import mlflow
from tasks.artifacts.predictor import load_predictor, predict
from tasks.config import ServingSettings
from tasks.models.base import load_base
from tasks.serving.batching import Batcher, pick_batch
from tasks.serving.pool import Pool
from tasks.serving.run import start_in_thread
from tasks.serving.service import Service

TEXTS = ["a gripping, beautifully acted film", "dull and far too long", "fine", "I laughed, I cried",
         "not my kind of thing at all, though the lead is good"]


def test_jobs_with_one_mix_key_join_one_batch():
    queued = [("a", 2), ("b", 1), ("c", 30), ("a", 3)]
    assert pick_batch(queued, 32) == [0, 3]                              # no mix keys: one version
    assert pick_batch(queued, 32, ["g", "g", None, "g"]) == [0, 1, 3]    # c cannot mix
    assert pick_batch(queued, 32, ["g", "h", "g", "g"]) == [0, 2]        # 2 + 30 fill it
    assert pick_batch(queued, 32, [None, "g", "g", None]) == [0, 3]      # the oldest decides


def test_batcher_runs_mixed_batches_and_falls_back_to_each_request_alone():
    mixed, single = [], []

    def run(target, texts):
        single.append(target)
        return [f"{target}:{t}" for t in texts]

    def run_mixed(items):
        mixed.append([t for t, _ in items])
        if any("boom" in ts for _, ts in items):
            raise RuntimeError("a broken text")
        return [[f"{t}+:{x}" for x in ts] for t, ts in items]

    batcher = Batcher(run, wait_seconds=0.2, max_texts=8, mix_key=lambda t: "g" if t in "ab" else None,
                      run_mixed=run_mixed)
    futures = [batcher.submit(k, k, t) for k, t in [("a", ["1"]), ("b", ["2", "3"]), ("c", ["4"]), ("a", ["5"])]]
    batcher.start()
    assert [f.result(5) for f in futures] == [["a+:1"], ["b+:2", "b+:3"], ["c:4"], ["a+:5"]]
    assert mixed == [["a", "b", "a"]] and single == ["c"] and batcher.mixed_batches == 1
    boom = [batcher.submit(k, k, t) for k, t in [("a", ["boom"]), ("b", ["6"])]]
    assert boom[0].result(5) == ["a:boom"] and boom[1].result(5) == ["b:6"]   # each alone, on run()
    batcher.stop()


def test_lora_versions_answer_in_one_pass_like_each_alone(tmp_path, tiny_bert):
    base = load_base(str(tiny_bert))
    folders = [saved_version(tmp_path, base, name, seed) for seed, name in
               enumerate(["lora", "lora", "lora", "ia3"])]
    pool = Pool(merged=[], on_inference_thread=lambda fn: fn())
    loaded = [pool.load("m", str(i + 1), f) for i, f in enumerate(folders)]
    lora, ia3 = loaded[:3], loaded[3]
    assert len({v.mix for v in lora}) == 1 and lora[0].mix and ia3.mix == ""   # PEFT mixes LoRA only
    alone = [predict(load_predictor(f), TEXTS).probs for f in folders[:3]]
    # three requests of different sizes, interleaved versions, batches of 4 cut across them
    items = [(lora[1], TEXTS[:2]), (lora[0], TEXTS), (lora[2], TEXTS[1:4]), (lora[1], TEXTS[4:])]
    got = pool.predict_mixed(items, batch_size=4)
    want = [alone[1][:2], alone[0], alone[2][1:4], alone[1][4:]]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)
    assert not np.allclose(alone[0], alone[1], atol=1e-3)   # the versions do differ
    with pytest.raises(ValueError, match="one mix key"):
        pool.predict_mixed([(lora[0], TEXTS), (ia3, TEXTS)], 4)
    off = Pool(merged=[], on_inference_thread=lambda fn: fn(), mixed_batches=False)
    assert off.load("m", "1", folders[0]).mix == ""


def test_lora_versions_of_other_ranks_and_targets_answer_in_one_batched_pass_like_each_alone(tmp_path, tiny_bert):
    """A mixed pass stacks each LoRA layer's versions (tasks/strategies/_lora_mixed.py): ranks 2,
    8 and 16 padded to one, another alpha, a version that adapts more modules than the others
    (its layers hold one version), and a version attached after a pass (the stack is rebuilt)."""
    base = load_base(str(tiny_bert))
    params = [{"r": 2}, {"r": 16, "alpha": 4}, {}, {"r": 4, "target_modules": ["query", "key", "value"]}]
    folders = [saved_version(tmp_path, base, "lora", seed, params=p) for seed, p in enumerate(params)]
    pool = Pool(merged=[], on_inference_thread=lambda fn: fn())
    loaded = [pool.load("m", str(i + 1), f) for i, f in enumerate(folders[:2])]
    alone = [predict(load_predictor(f), TEXTS).probs for f in folders]
    got = pool.predict_mixed([(loaded[1], TEXTS[:3]), (loaded[0], TEXTS)], batch_size=8)
    np.testing.assert_allclose(got[0], alone[1][:3], atol=1e-5)
    np.testing.assert_allclose(got[1], alone[0], atol=1e-5)
    loaded += [pool.load("m", str(i + 1), f) for i, f in enumerate(folders[2:], start=2)]
    items = [(v, TEXTS[i % 3:]) for i, v in enumerate(reversed(loaded))]
    for (_, texts), g, want in zip(items, pool.predict_mixed(items, batch_size=16), reversed(alone)):
        np.testing.assert_allclose(g, want[TEXTS.index(texts[0]):], atol=1e-5)
    stacks = [m for m in loaded[0].group.model.modules() if hasattr(m, "_adaptflow_lora_stack")]
    assert stacks, "the batched pass ran (PEFT's per-version sub-batches leave no stack)"


@pytest.fixture(scope="module")
def registry_store(tmp_path_factory, tiny_bert):
    """Three LoRA versions (seeds 1-3) of one model, trained two steps by the strategy's own code
    and registered as `adaptflow run` registers them (tests/test_serving.py's helper)."""
    from test_serving import register_version

    saved_uri = os.environ.pop("MLFLOW_TRACKING_URI", None)
    root = tmp_path_factory.mktemp("mixed")
    uri = fresh_store(root)
    experiment = mlflow.create_experiment("mixed", artifact_location=(root / "artifacts").as_uri())
    base = load_base(str(tiny_bert))
    for seed in (1, 2, 3):
        register_version(root, base, "tenants", "lora", seed, experiment)
    client = MlflowClient()
    client.set_registered_model_alias("tenants", "champion", "1")
    client.set_registered_model_alias("tenants", "challenger", "2")
    yield uri
    if saved_uri is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved_uri


def test_concurrent_requests_for_three_registered_versions_share_passes_over_http(registry_store):
    settings = ServingSettings(poll_seconds=60, max_texts=8, max_chars=200, batch_wait_ms=150)
    service = Service(["tenants"], settings).start()
    running = start_in_thread(service)
    try:
        url = f"{running.url}/predict"
        route = [{"alias": "champion"}, {"alias": "challenger"}, {"version": 3}]
        assert requests.post(url, json={"model": "tenants", "texts": ["warm up"], **route[2]}, timeout=30).ok
        before = service.batcher.mixed_batches
        bodies = [{"model": "tenants", "texts": TEXTS[i % 5:i % 5 + 2], **route[i % 3]} for i in range(12)]
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda b: requests.post(url, json=b, timeout=30).json(), bodies))
        assert service.batcher.mixed_batches > before
        alone = {v: mlflow.pyfunc.load_model(f"models:/tenants/{v}") for v in ("1", "2", "3")}
        for body, answer in zip(bodies, answers):
            want = alone[answer["version"]].predict(pd.DataFrame({"text": body["texts"]}))
            assert answer["version"] == {"champion": "1", "challenger": "2"}.get(body.get("alias"), "3")
            for got, (_, row) in zip(answer["predictions"], want.iterrows()):
                assert got["label"] == row["label"]
                assert got["probability"] == pytest.approx(row["probability"], abs=1e-5)
        modes = {m["version"]: m["mode"] for m in requests.get(f"{running.url}/models", timeout=30).json()["loaded"]}
        assert modes == {"1": "shared_peft", "2": "shared_peft", "3": "shared_peft"}
    finally:
        running.stop()
