"""Learning from production, part one: POST /feedback. The rules (pure), the store (real SQLite:
idempotent repeats, durable rows, the texts it needs), redaction before storing, and the route over
real HTTP on a tiny registered model: 404 unknown id, 422 a label outside the set, 409 without
stored texts, 401 without the token, and every 200 a stored row."""
from __future__ import annotations

import os
import re
import time

import pytest
import requests
from conftest import LABELS, fresh_store
from mlflow.tracking import MlflowClient

import mlflow
from tasks.config import FeedbackSettings, PolicySettings, ServingSettings
from tasks.evaluation.policy import OutputPolicy
from tasks.outcomes.feedback import (Answered, FeedbackRefused, FeedbackRow, answered, client_hash, feedback_rows,
                                     replay, screen, store_feedback, text_hash)
from tasks.outcomes.recorder import Recorder
from tasks.outcomes.store import Outcome, OutcomeStore, RequestText
from tasks.registry.governance import promote
from tasks.serving.checks import RequestError
from tasks.serving.feedback import check_fields, feedback_row
from tasks.serving.run import start_in_thread
from tasks.serving.service import Service
from tasks.tasktypes import task_type

MODEL = "reviews-feedback"
TOKEN_ENV = "ADAPTFLOW_TEST_FEEDBACK_TOKEN"
RULES = FeedbackSettings(max_per_client=5, flood_min_rows=3, flood_max_share=0.75, max_input_chars=40, max_text_chars=30)


def row(text: str = "a fine film", label: str | None = "positive", client: str = "k", at: float = 1000.0,
        request: str = "r1", item: int = 0, **extra) -> FeedbackRow:
    return FeedbackRow(request_id=request, item=item, client=client_hash(client), at=at, model=MODEL, version="1",
                       task="classification", input=text, text_hash=text_hash(text), label=label, **extra)


# ---- the rules (pure) ------------------------------------------------------------------
def test_each_poisoning_rule_refuses_with_its_setting_named():
    assert screen(row(), [], RULES) is None
    long = screen(row("x" * 41), [], RULES)
    assert long.status == 413 and "feedback.max_input_chars=40" in str(long)
    assert screen(row(output="y" * 31, label=None), [], RULES).status == 413
    # A duplicate: the same normalised input from the same client under another request id.
    dup = screen(row("A  FINE film", request="r2"), [row()], RULES)
    assert dup.status == 409 and "duplicate" in str(dup) and "r1" in str(dup)
    # The cap: five accepted rows in the window, a sixth is refused (mixed labels: no flood).
    five = [row(f"text {i}", LABELS[i % 2], request=f"r{i}") for i in range(5)]
    capped = screen(row("another"), five, RULES)
    assert capped.status == 429 and "feedback.max_per_client" in str(capped)
    # The flood: past flood_min_rows=3, a fourth "positive" out of four is over 0.75; a mixed one is not.
    three = [row(f"t{i}", "positive", request=f"q{i}") for i in range(3)]
    flood = screen(row("t3", "positive", request="q3"), three, RULES)
    assert flood.status == 429 and "flood" in str(flood) and "'positive'" in str(flood)
    assert screen(row("t3", "negative", request="q3"), three, RULES) is None
    assert screen(row("t2", "positive"), three[:2], RULES) is None   # under flood_min_rows nothing is a flood


def test_replay_applies_the_rules_in_order_per_client_and_window():
    """fold-feedback's second look: a client's rows past the cap are refused even when two replicas
    let them through; another client is counted on its own; rows outside the window are forgotten."""
    settings = FeedbackSettings(max_per_client=2, flood_min_rows=100, window_hours=1)
    rows = [row(f"a{i}", client="a", at=1000 + i, request=f"a{i}") for i in range(4)]
    rows += [row("b0", client="b", at=1001, request="b0"), row("a0", client="a", at=1000 + 7200, request="late")]
    accepted, refused = replay(rows, settings)
    assert [r.request_id for r in accepted] == ["a0", "a1", "b0", "late"]
    assert [r.request_id for r, _ in refused] == ["a2", "a3"] and all("max_per_client" in why for _, why in refused)


def test_a_poisoned_batch_is_refused_or_capped_and_nothing_of_it_reaches_the_data():
    """One key: 100 rows of one label, 40 % of them duplicates of the others, 5 over-long inputs,
    then a few of the other label to dilute the flood; an honest key beside it is untouched."""
    settings = FeedbackSettings()   # the shipped rules: flood_min_rows 50, flood_max_share 0.8
    texts = [f"poison text {i}" for i in range(60)]
    batch = [row(t, "positive", client="attacker", at=1000 + i, request=f"p{i}") for i, t in enumerate(texts)]
    batch += [row(texts[i], "positive", client="attacker", at=1100 + i, request=f"d{i}") for i in range(40)]
    batch += [row("z" * 2500, "positive", client="attacker", at=1200 + i, request=f"l{i}") for i in range(5)]
    batch += [row(f"dilute {i}", "negative", client="attacker", at=1300 + i, request=f"n{i}") for i in range(5)]
    honest = [row(f"honest {i}", LABELS[i % 2], client="shop", at=1000 + i, request=f"h{i}") for i in range(60)]
    stored, answers = [], {}
    for r in batch + honest:   # request time: each row against what this client got accepted before
        problem = screen(r, [h for h in stored if h.client == r.client], settings)
        answers[r.request_id] = problem.status if problem else 200
        if problem is None:
            stored.append(r)
    codes = lambda prefix: {answers[k] for k in answers if k.startswith(prefix)}
    assert sum(answers[f"p{i}"] == 200 for i in range(60)) == 50 and codes("d") == {409} and codes("l") == {413}
    assert {answers[f"p{i}"] for i in range(50, 60)} == {429} and codes("n") == {200} and codes("h") == {200}
    accepted, refused = replay(stored, settings)
    assert {r.client for r in accepted} == {client_hash("shop")} and len(accepted) == 60
    assert len(refused) == 55 and all("flood" in why for _, why in refused)


def test_a_body_is_checked_against_the_answering_task_type():
    found = Answered("r1", MODEL, "1", "classification", ["a fine film", "dull"], ["positive", "negative"], LABELS)
    good = feedback_row({"request_id": "r1", "item": 1, "label": "positive"}, found, "k", now=5.0)
    assert (good.input, good.answer, good.label, good.item, good.at) == ("dull", "negative", "positive", 1, 5.0)
    for body, status, words in [
        ({"request_id": "r1", "label": "meh"}, 422, "not one of"),
        ({"request_id": "r1"}, 422, "missing field(s) label"),
        ({"request_id": "r1", "label": "positive", "item": 2}, 422, "out of range"),
        ({"request_id": "r1", "label": "positive", "item": -1}, 422, "'item' must be in 0.."),
        ({"request_id": "r1", "label": "positive", "stars": 5}, 422, "unknown field(s) stars"),
        ({"request_id": "r1", "label": 3}, 422, "'label' must be a string"),
        (["r1"], 400, "JSON object"),
    ]:
        with pytest.raises(RequestError, match=re.escape(words)) as caught:
            feedback_row(body, found, "k")
        assert caught.value.status == status, body
    written = Answered("r2", "headlines", "1", "generation", ["a lead"], ["a headline"], [])
    assert feedback_row({"request_id": "r2", "rating": 2}, written, "k").rating == 2
    with pytest.raises(RequestError, match="at least one of output, rating"):
        feedback_row({"request_id": "r2"}, written, "k")
    with pytest.raises(RequestError, match=re.escape("'rating' must be in 1..5")):
        check_fields({"request_id": "r2", "rating": 9}, task_type("generation").feedback_body)


def test_texts_are_redacted_before_they_are_stored():
    policy = OutputPolicy(PolicySettings(enabled=False))   # redaction applies even with the policy off
    assert policy.redact("write to ana@example.com or call +1 415 555 2671 today") == \
        "write to <EMAIL> or call <PHONE> today"
    assert policy.redact("nothing personal here") == "nothing personal here"


# ---- the store (real SQLite) ---------------------------------------------------------------
def test_the_store_keeps_feedback_once_and_says_why_it_cannot(tmp_path):
    store = OutcomeStore(f"sqlite:///{tmp_path / 'outcomes.db'}")
    ok = Outcome("r1", 1.0, "a", MODEL, "1", "champion", False, "predict", 200, 2.0, 1, answers=["positive"])
    bare = Outcome("r2", 1.0, "a", MODEL, "1", "champion", False, "predict", 200, 2.0, 1, answers=["negative"])
    failed = Outcome("r3", 1.0, "a", MODEL, "1", "champion", False, "predict", 503, 2.0, 1)
    store.write([ok, bare, failed], texts=[RequestText("r1", 1.0, MODEL, "1", "classification", ["a fine film"],
                                                       ["positive"], LABELS)])
    assert answered(store, "nope") is None
    with pytest.raises(FeedbackRefused, match="outcomes.store_texts: true"):
        answered(store, "r2")
    with pytest.raises(FeedbackRefused, match="status 503"):
        answered(store, "r3")
    found = answered(store, "r1")
    assert found.inputs == ["a fine film"] and found.labels == LABELS
    first = feedback_row({"request_id": "r1", "label": "negative"}, found, "k")
    assert store_feedback(store, first, RULES) == "recorded"
    assert store_feedback(store, first, RULES) == "already recorded"       # a repeat: idempotent
    with pytest.raises(FeedbackRefused, match="different content") as caught:
        store_feedback(store, feedback_row({"request_id": "r1", "label": "positive"}, found, "k"), RULES)
    assert caught.value.status == 409
    other = feedback_row({"request_id": "r1", "label": "positive"}, found, "another client")
    assert store_feedback(store, other, RULES) == "recorded"               # a second opinion is not a repeat
    stored = feedback_rows(store, MODEL)
    assert [(r.label, r.client) for r in stored] == [("negative", client_hash("k")), ("positive", client_hash("another client"))]
    assert "k" not in {r.client for r in stored}   # the key itself is never stored
    assert store.prune(time.time() + 10) == 3 and answered(store, "r1") is None
    assert len(feedback_rows(store, MODEL)) == 2   # outcome retention does not delete feedback


# ---- the route over real HTTP --------------------------------------------------------------
@pytest.fixture(scope="module")
def registry(tmp_path_factory, tiny_bert):
    from test_serving import register_version

    from tasks.models.base import load_base

    saved_uri = os.environ.pop("MLFLOW_TRACKING_URI", None)
    root = tmp_path_factory.mktemp("feedback")
    uri = fresh_store(root)
    experiment = mlflow.create_experiment("feedback", artifact_location=(root / "artifacts").as_uri())
    register_version(root, load_base(str(tiny_bert)), MODEL, "lora", 1, experiment)
    promote(MlflowClient(), uri, MODEL, "ana", "first release", version="1")
    yield root
    if saved_uri is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved_uri


def serve(root, name: str, store_texts: bool, monkeypatch=None):
    url = f"sqlite:///{root / f'{name}.db'}"
    settings = ServingSettings(poll_seconds=60, max_texts=8, batch_wait_ms=2,
                               token_env=TOKEN_ENV if monkeypatch else None)
    service = Service([MODEL], settings, recorder=Recorder(OutcomeStore(url), 1000, 1, store_texts=store_texts),
                      feedback=RULES, replica=name).start()
    return start_in_thread(service), OutcomeStore(url)


def test_feedback_over_http_is_checked_and_durable_before_its_200(registry, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    running, store = serve(registry, "with-texts", True, monkeypatch)
    auth = {"Authorization": "Bearer s3cret"}
    try:
        answer = requests.post(f"{running.url}/predict", json={"model": MODEL, "texts": ["mail ana@example.com: great film"]},
                               headers=auth, timeout=30).json()
        rid = answer["request_id"]
        send = lambda body, headers=auth: requests.post(f"{running.url}/feedback", json=body, headers=headers, timeout=30)
        assert send({"request_id": rid, "label": "negative"}, {}).status_code == 401
        first = send({"request_id": rid, "label": "negative", "client": "app-1"})
        assert first.status_code == 200 and first.json()["status"] == "recorded", first.text
        stored = feedback_rows(store, MODEL)   # committed before the 200
        assert len(stored) == 1 and stored[0].input == "mail <EMAIL>: great film"
        assert stored[0].answer == answer["predictions"][0]["label"] and stored[0].label == "negative"
        again = send({"request_id": rid, "label": "negative", "client": "app-1"})
        assert again.status_code == 200 and again.json()["status"] == "already recorded"
        assert send({"request_id": "0" * 32, "label": "negative"}).status_code == 404
        outside = send({"request_id": rid, "label": "neutral", "client": "app-2"})
        assert outside.status_code == 422 and "positive" in outside.json()["error"]
        assert send({"request_id": rid, "label": "positive", "client": "app-1"}).status_code == 409
        assert len(feedback_rows(store, MODEL)) == 1
        assert 'adaptflow_feedback_total{status="200"} 2.0' in requests.get(f"{running.url}/metrics", timeout=10).text
    finally:
        running.stop()


def test_without_stored_texts_feedback_says_which_setting_to_turn_on(registry):
    running, store = serve(registry, "no-texts", False)
    try:
        rid = requests.post(f"{running.url}/predict", json={"model": MODEL, "texts": ["great film"]}, timeout=30).json()["request_id"]
        refused = requests.post(f"{running.url}/feedback", json={"request_id": rid, "label": "positive"}, timeout=30)
        assert refused.status_code == 409 and "outcomes.store_texts: true" in refused.json()["error"]
        assert feedback_rows(store, MODEL) == []
    finally:
        running.stop()
