"""Blinded side-by-side review (issue 29): the statistics against published worked examples and
reference implementations, sessions built from two registered tiny versions in a temporary MLflow
store, the votes' uniqueness in the outcome store's SQLite database, the blinding of sides, the
verdict, and the promotion gate through the real governance path."""
from __future__ import annotations

import hashlib
import math
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import LABELS, ROOT, fresh_store, saved_version
from mlflow.tracking import MlflowClient

import mlflow
from tasks.config import HumanReviewRequirement, ReviewSettings, SettingsError, load_settings, parse_section
from tasks.review import gate, stats, steps
from tasks.review.session import ReviewError, assign, load_session, sides, stratified_sample
from tasks.review.votes import DuplicateVote

MODEL = "review-tiny"


# ---- statistics: known answers --------------------------------------------------------
def test_cohen_kappa_is_wikipedias_worked_example():
    # https://en.wikipedia.org/wiki/Cohen%27s_kappa: 50 items, both yes 20, A yes B no 5,
    # A no B yes 10, both no 15 -> po 0.7, pe 0.5, kappa 0.4.
    first = ["yes"] * 25 + ["no"] * 25
    second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert stats.cohen_kappa(first, second) == pytest.approx(0.4)
    from sklearn.metrics import cohen_kappa_score   # a reference implementation

    rng = np.random.default_rng(0)
    x, y = rng.choice(list("abct"), 40).tolist(), rng.choice(list("abct"), 40).tolist()
    assert stats.cohen_kappa(x, y) == pytest.approx(cohen_kappa_score(x, y))


def test_fleiss_kappa_is_wikipedias_worked_example():
    # https://en.wikipedia.org/wiki/Fleiss%27_kappa: 10 items, 14 raters, 5 categories -> 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert stats.fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    with pytest.raises(ValueError, match="same number"):
        stats.fleiss_kappa([[1, 1], [2, 1]])


def test_wilson_interval_matches_scipy_and_ties_count_half():
    from scipy.stats import binomtest

    for k, n in [(0, 10), (7, 20), (50, 100), (60, 60)]:
        ci = binomtest(k, n).proportion_ci(method="wilson")
        assert stats.wilson(k, n) == pytest.approx((ci.low, ci.high))
    w = stats.win_rate(["b"] * 6 + ["a"] * 2 + ["tie"] * 1 + ["bad"] * 1)
    assert (w.b_wins, w.a_wins, w.ties, w.both_bad, w.judgments) == (6, 2, 1, 1, 10)
    assert w.rate == pytest.approx(0.7) and w.lower < 0.7 < w.upper
    assert w.flipped().rate == pytest.approx(0.3) and w.flipped().lower == pytest.approx(1 - w.upper)
    with pytest.raises(ValueError, match="unknown choice"):
        stats.win_rate(["B"])


def test_bradley_terry_on_hand_computable_cases():
    # Two players, x beat y 2 of 3: the likelihood p^2 (1-p) peaks at p = 2/3, so p_x / p_y = 2.
    p = stats.bradley_terry([("x", "y", 1), ("x", "y", 1), ("x", "y", 0)], prior=0)
    assert p["x"] / p["y"] == pytest.approx(2.0, rel=1e-6)
    # A cycle (each beats the next once): all equal.
    cycle = stats.bradley_terry([("x", "y", 1), ("y", "z", 1), ("z", "x", 1)], prior=0)
    assert cycle["x"] == pytest.approx(cycle["y"]) == pytest.approx(cycle["z"])
    # Three players: at the maximum, each player's wins equal their expected wins (the score equations).
    games = [("x", "y", 1)] * 5 + [("y", "x", 1)] * 2 + [("y", "z", 1)] * 4 + [("z", "y", 1)] * 3 \
        + [("x", "z", 1)] * 3 + [("z", "x", 1)] * 1 + [("x", "z", 0.5)] * 2
    q = stats.bradley_terry(games, prior=0)
    for k in q:
        wins = sum(s if i == k else 1 - s for i, j, s in games if k in (i, j))
        expected = sum(q[k] / (q[i] + q[j]) for i, j, _ in games if k in (i, j))
        assert wins == pytest.approx(expected, rel=1e-6)
    assert q["x"] > q["y"] > q["z"]
    boot = stats.bootstrap_bradley_terry(games, rounds=100, seed=1)
    for k, (s, lo, hi) in boot.items():
        assert lo <= s <= hi


def test_agreement_tags_and_metric_disagreements():
    two = {"ana": {"1": "a", "2": "b", "3": "tie"}, "ben": {"1": "a", "2": "b", "3": "tie", "4": "b"}}
    assert stats.agreement(two) == ("cohen_kappa", 1.0, 3)
    three = {**two, "cy": {"1": "b", "2": "b", "3": "tie"}}
    measure, value, items = stats.agreement(three)
    assert measure == "fleiss_kappa" and items == 3 and value < 1
    assert stats.agreement({"ana": {"1": "a"}})[0] == "none"
    assert stats.tag_counts([["style"], ["style", "wrong fact"], []]) == {"style": 2, "wrong fact": 1}
    found = stats.metric_disagreements({"i1": ["b", "b"], "i2": ["a"], "i3": ["tie"]},
                                       {"i1": (0.9, 0.2), "i2": (0.5, 0.6), "i3": (0.0, 1.0)})
    assert found == [("i1", "b", "a"), ("i2", "a", "b")]


# ---- pure session decisions ------------------------------------------------------------
def test_stratified_sample_keeps_proportions_and_is_seeded():
    strata = ["pos"] * 75 + ["neg"] * 25
    picked = stratified_sample(strata, 20, seed=3)
    assert len(picked) == 20 and len(set(picked)) == 20
    assert sum(strata[i] == "neg" for i in picked) == 5
    assert picked == stratified_sample(strata, 20, seed=3) != stratified_sample(strata, 20, seed=4)
    assert stratified_sample(strata[:10], 20, 0) == list(range(10))


def test_sides_are_balanced_and_not_predictable_from_order():
    from scipy.stats import binomtest

    for seed in range(5):
        flags = sides(60, seed)
        assert binomtest(sum(flags), len(flags)).pvalue > 0.05
        assert stats.runs_test_p(flags) > 0.01
    assert stats.runs_test_p([True, False] * 30) < 1e-6   # the check catches an alternating order
    assert stats.runs_test_p([True] * 30 + [False] * 30) < 1e-6


def test_assign_gives_every_seat_the_overlap_and_shares_the_rest():
    ids = [f"i{k}" for k in range(20)]
    seats = assign(ids, 3, 5, seed=0)
    shared = set.intersection(*(set(s) for s in seats.values()))
    assert shared == set(ids[:5])
    assert sorted(i for s in seats.values() for i in s if i not in shared) == sorted(ids[5:])
    assert [len(s) for s in seats.values()] == [10, 10, 10]
    with pytest.raises(ReviewError, match="overlap must be at least 2"):
        assign(ids, 2, 0, 0)


def test_generated_answers_are_shown_as_text_scored_by_chrf_and_stratified_by_length():
    from tasks.artifacts.predictor import Prediction
    from tasks.review.session import answer, item_score, strata_of

    frame = pd.DataFrame({"text": ["a" * k for k in range(1, 10)], "target": ["t"] * 9})
    assert strata_of(frame) == ["short"] * 3 + ["medium"] * 3 + ["long"] * 3
    shown = answer(Prediction(labels=[], outputs=["Bank raises rates", "x"]), 0)
    assert shown == {"text": "Bank raises rates"}
    assert item_score(shown, "Bank raises rates") == 1.0 > item_score(shown, "Storm hits coast")
    probs = Prediction(labels=LABELS, probs=np.array([[0.2, 0.8]]))
    assert answer(probs, 0) == {"label": "positive", "confidence": 0.8}
    assert item_score(answer(probs, 0), "positive") == 1.0 and item_score(answer(probs, 0), "negative") == 0.0


# ---- settings and the gate's decision ------------------------------------------------------
def test_review_settings_are_validated():
    assert ROOT.joinpath("params.yaml").is_file() and load_settings(ROOT / "params.yaml").review.require_human is None
    s = parse_section(ReviewSettings, {"require_human": {"min_judgments": 40}}, "review")
    assert s.require_human == HumanReviewRequirement(min_judgments=40)
    with pytest.raises(SettingsError, match="unknown key.*min_votes"):
        parse_section(ReviewSettings, {"require_human": {"min_votes": 3}}, "review")
    with pytest.raises(SettingsError, match="min_win_rate_lower must be in"):
        parse_section(ReviewSettings, {"require_human": {"min_win_rate_lower": 2}}, "review")


def test_gate_decision_refuses_without_or_below_and_allows_above():
    req = HumanReviewRequirement(min_judgments=60, min_win_rate_lower=0.5, min_agreement=0.4)
    assert gate.human_gate(None, {}).allowed
    refused = gate.human_gate(req, {})
    assert not refused.allowed and "no human review verdict" in refused.missing[0]
    good = {"review.session": "r1", "review.judgments": "64", "review.win_rate": "0.7", "review.win_rate_lower": "0.58",
            "review.agreement": "0.55", "review.agreement_measure": "cohen_kappa", "review.opponent": "1"}
    assert gate.human_gate(req, good, champion="1") == gate.GateDecision(True, [], "r1")
    low = gate.human_gate(req, {**good, "review.judgments": "30", "review.win_rate_lower": "0.41",
                                "review.agreement": "nan"}, champion="1")
    assert not low.allowed and len(low.missing) == 3
    assert "30 judgments" in low.missing[0] and "lower bound 0.410" in low.missing[1]
    assert "no agreement measured" in low.missing[2]
    stale = gate.human_gate(req, good, champion="3")
    assert stale.missing == ["the verdict compared it with v1, but @champion is v3: review it against the current "
                             "champion"]


# ---- sessions on two registered tiny versions ---------------------------------------------
TEXTS = ["a fine film", "dull and long", "loved every minute", "a mess", "superb acting", "boring plot",
         "great fun", "awful script", "a joy", "tedious", "brilliant", "weak ending"]


def register(folder: Path, experiment: str, test_md5: str):
    from tasks.artifacts.manifest import Manifest
    from tasks.artifacts.pyfunc import PYFUNC_ENTRY, signature
    from tasks.evaluation.record import StrategyResult
    from tasks.models.base import ResolvedBase
    from tasks.registry import versions

    manifest = Manifest.read(folder)
    base = ResolvedBase(manifest.base_name, Path(manifest.base_name), manifest.base_fingerprint)
    with mlflow.start_run(experiment_id=experiment) as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_ENTRY), artifacts={"strategy": str(folder)},
                                       signature=signature(), pip_requirements=["adaptflow"])
    result = StrategyResult(strategy=manifest.strategy, run_id=run.info.run_id, model_uri=info.model_uri,
                            saves=manifest.saves, metrics={"test_macro_f1": 0.5, "test_examples": 2.0}, base=base,
                            params=manifest.params)
    scoring = versions.ScoringSet(split_md5="v", texts=["good"], labels=np.array([1]), label_names=LABELS)
    return versions.register_best(MODEL, "test_macro_f1", 0.0, {}, [result], {"data.test_md5": test_md5},
                                  scoring).version


def make_store(root: Path, tiny_bert: Path, rows: int = 48):
    """A project folder with a test split of `rows` rows (3:1 positive), a local MLflow store with
    MODEL v1 (@champion) and v2 (@challenger): LoRA on the tiny BERT, random seeded weights."""
    from tasks.models.base import load_base
    from tasks.registry.governance import promote

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    processed = root / params["data"]["processed_dir"]
    processed.mkdir(parents=True)
    labels = (["positive"] * 3 + ["negative"]) * (rows // 4)
    pd.DataFrame({"text": [f"{TEXTS[k % len(TEXTS)]} #{k}" for k in range(rows)], "label": labels}).to_parquet(
        processed / "test.parquet", index=False)
    md5 = hashlib.md5((processed / "test.parquet").read_bytes()).hexdigest()
    uri = fresh_store(root)
    experiment = mlflow.create_experiment("review-tests", artifact_location=(root / "artifacts").as_uri())
    base = load_base(str(tiny_bert))
    for seed in (1, 2):
        register(saved_version(root, base, "lora", seed), experiment, md5)
    client = MlflowClient()
    promote(client, uri, MODEL, "ana", "first release", version="1")
    client.set_registered_model_alias(MODEL, "challenger", "2")
    return root, uri, client


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_bert):
    import os

    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield make_store(tmp_path_factory.mktemp("review"), tiny_bert)
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture(scope="module")
def session(store):
    root, uri, client = store
    settings = load_settings(root / "params.yaml")
    return steps.create(client, settings, model=MODEL, a="champion", b="challenger", n=20, source="test",
                        reviewers=2, overlap=6, seed=7)


def test_a_session_is_a_run_with_a_json_items_table(store, session):
    root, uri, client = store
    assert (session.a, session.b, len(session.items)) == ("1", "2", 20)
    run = client.get_run(session.id)
    assert client.get_experiment(run.info.experiment_id).name == "adaptflow-review"
    assert run.data.params["b_ref"] == "challenger" and run.data.tags["review.state"] == "open"
    assert [f.path for f in client.list_artifacts(session.id, "review")] == ["review/items.json"]
    assert load_session(client, session.id) == session
    # stratified: the test split is 3:1 positive, so 15:5 of 20
    assert sum(it.stratum == "negative" for it in session.items) == 5
    for it in session.items:   # both versions answered, as the page shows classification answers
        assert set(it.answers) == {"a", "b"} and it.answers["a"]["label"] in LABELS
        assert 0.5 <= it.answers["b"]["confidence"] <= 1 and it.scores["a"] in (0.0, 1.0)
        assert len(it.id) == 16 and it.id not in it.input
    assert sum(it.swapped for it in session.items) == 10
    overlap = set.intersection(*(set(s) for s in session.seats.values()))
    assert len(overlap) == 6 and sum(len(s) for s in session.seats.values()) == 6 + 20


def test_sides_are_balanced_and_unpredictable_in_what_each_reviewer_sees(session):
    from scipy.stats import binomtest

    shown = {it.id: it.swapped for it in session.items}
    for seat in session.seats.values():
        flags = [shown[i] for i in seat]
        assert binomtest(sum(flags), len(flags)).pvalue > 0.05
        assert stats.runs_test_p(flags) > 0.01
        position = np.arange(len(flags))
        assert abs(np.corrcoef(position, flags)[0, 1]) < 0.6


def test_bad_sessions_are_refused_with_what_to_change(store):
    root, uri, client = store
    settings = load_settings(root / "params.yaml")
    ask = dict(model=MODEL, a="champion", b="challenger", n=10, reviewers=1, overlap=0, seed=0)
    with pytest.raises(ReviewError, match="never the request's text"):
        steps.create(client, settings, **{**ask, "source": "traffic"})
    with pytest.raises(ReviewError, match="both review-tiny v1"):
        steps.create(client, settings, **{**ask, "b": "1", "source": "test"})
    with pytest.raises(ReviewError, match="no alias @canary"):
        steps.create(client, settings, **{**ask, "b": "canary", "source": "test"})


def test_one_vote_per_reviewer_per_item_even_at_once(store, session):
    root, uri, client = store
    votes = steps.vote_store(load_settings(root / "params.yaml"))
    item = session.items[0].id
    results = []

    def cast():
        try:
            votes.vote("dup-test", item, "ana", "A", [])
            results.append("ok")
        except DuplicateVote:
            results.append("dup")
        except Exception as exc:   # anything else fails the test with its message
            results.append(repr(exc))

    threads = [threading.Thread(target=cast) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["dup", "dup", "dup", "ok"]
    votes.vote("dup-test", item, "ben", "B", ["style"])   # another reviewer may
    assert [(v.reviewer, v.choice, v.tags) for v in votes.votes("dup-test")] == [("ana", "A", []),
                                                                                 ("ben", "B", ["style"])]
    assert (root / "mlflow" / "outcomes.db").is_file()   # the outcome store's database
    with pytest.raises(ValueError, match="unknown reason tag"):
        votes.vote("dup-test", item, "cy", "A", ["rude"])
    assert votes.seat("dup-test", "ana", 2) == "1" and votes.seat("dup-test", "ben", 2) == "2"
    assert votes.seat("dup-test", "cy", 2) is None and votes.seat("dup-test", "ana", 2) == "1"


def test_the_promote_command_and_the_deployed_flow_read_the_gate(store, capsys, monkeypatch):
    from flows import server_side
    from flows.cli import main

    root, uri, client = store
    gated = root / "gated.yaml"   # beside the store's params: the same local store
    gated.write_text("review:\n  require_human: {min_judgments: 20, min_win_rate_lower: 0.5}\n")
    assert main(["promote", MODEL, "--from", "challenger", "--reason", "looks good", "--params", str(gated)]) == 2
    err = capsys.readouterr().err
    assert "review-tiny v2 may not be promoted: review.require_human is set and no human review verdict" in err
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    for name in (server_side.PROJECT_ROOT_ENV, server_side.PIPELINE_ACCOUNT_ENV, server_side.REVIEW_GATE_ENV):
        monkeypatch.setenv(name, "")   # restored at teardown: pin() writes them
    server_side.pin(gated)
    # the deployed flow reads the pinned requirement, whatever params file a form names
    assert server_side.review_requirement(str(root / "params.yaml")) == HumanReviewRequirement(20, 0.5, 0.4)
    server_side.pin(root / "params.yaml")
    assert server_side.review_requirement(str(gated)) is None


def test_the_gate_refuses_then_allows_promotion_and_the_audit_links_the_session(store, session, tmp_path):
    from tasks.registry.governance import history

    root, uri, client = store
    settings = load_settings(root / "params.yaml")
    req = HumanReviewRequirement(min_judgments=20, min_win_rate_lower=0.5, min_agreement=0.4)
    ask = dict(version=None, from_alias="challenger", pipeline_account=None, requirement=req)
    with pytest.raises(gate.ReviewGateError, match="no human review verdict"):
        gate.promote(client, uri, MODEL, "ana", "people like it", **ask)
    # Two reviewers vote on their seats: b preferred on most items; they agree on the overlap.
    votes = steps.vote_store(settings)
    # The same choice per item from both reviewers (they agree): b's side, or a tie on a quarter.
    choice = lambda i: "tie" if int(i, 16) % 4 == 0 else ("A" if session.item(i).swapped else "B")  # noqa: E731
    for seat, reviewer in (("1", "ana"), ("2", "ben")):
        assert votes.seat(session.id, reviewer, 2) == seat
        for item_id in session.seats[seat][:8]:   # 8 each: 16 judgments, below 20
            votes.vote(session.id, item_id, reviewer, choice(item_id), [])
    verdict = steps.close(client, settings, session.id)
    assert verdict.win.judgments == 16
    with pytest.raises(gate.ReviewGateError, match="16 judgments.*asks for 20"):
        gate.promote(client, uri, MODEL, "ana", "people like it", **ask)
    for seat, reviewer in (("1", "ana"), ("2", "ben")):
        for item_id in session.seats[seat][8:]:
            votes.vote(session.id, item_id, reviewer, choice(item_id), [])
    verdict = steps.close(client, settings, session.id)
    assert verdict.win.judgments == 26 and verdict.win.b_wins + verdict.win.ties == 26
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["review.session"] == session.id and tags["review.role"] == "b" and tags["review.opponent"] == "1"
    assert float(tags["review.win_rate_lower"]) == pytest.approx(verdict.win.lower, abs=1e-4)
    assert client.get_model_version(MODEL, "1").tags["review.win_rate"] == f"{1 - verdict.win.rate:.4f}"
    run = client.get_run(session.id)
    assert run.data.metrics["review_judgments"] == 26 and run.data.tags["review.state"] == "closed"
    page = Path(client.download_artifacts(session.id, "review/verdict.html", str(tmp_path))).read_text()
    assert page.count("data:image/png;base64,") == 2 and session.id in page
    # a strict requirement on agreement or win rate still refuses, naming what is missing
    with pytest.raises(gate.ReviewGateError, match="below min_win_rate_lower 0.99"):
        gate.promote(client, uri, MODEL, "ana", "people like it",
                     **{**ask, "requirement": HumanReviewRequirement(20, 0.99, None)})
    entry = gate.promote(client, uri, MODEL, "ana", "people preferred it", **ask)
    assert entry.version == "2" and entry.evidence == {"review_session": session.id}
    assert history(client, MODEL).entries[-1].evidence == {"review_session": session.id}
    assert verdict.agreement == 1.0 and verdict.agreement_measure == "cohen_kappa"
    # The comparison report of the run that registered v2 shows the verdict (or says how to get one).
    from tasks.evaluation.review_report import review_section, version_review

    decision = {"model": MODEL, "version": 2}
    section = review_section(version_review(client, decision), decision)
    assert 'id="human-review"' in section and session.id in section and tags["review.win_rate_lower"] in section
    assert "No blinded review verdict" in review_section({}, decision) and review_section({}, {"version": 2}) == ""


def test_the_review_create_deployment_has_a_form(store):
    from flows.deployments import NAMES, deployments

    root, _, _ = store
    assert "review-create" in NAMES
    (d,) = deployments(str(root / "params.yaml"), only=["review-create"])
    schema = d._parameter_openapi_schema if hasattr(d, "_parameter_openapi_schema") else d.parameter_openapi_schema
    props = (schema.model_dump() if hasattr(schema, "model_dump") else schema)
    text = str(props)
    assert "ReviewCreateInput" in text and "overlap" in text and "reviewers" in text


def test_the_review_create_flow_builds_a_session_from_its_form(store, harness):
    from flows.human_review import review_create
    from flows.inputs import ReviewCreateInput

    root, uri, client = store
    line = review_create(ReviewCreateInput(model=MODEL, a="1", b="2", n=8, reviewers=1, overlap=0,
                                           params_file=str(root / "params.yaml")))
    session_id = line.split()[2].rstrip(":")
    made = load_session(client, session_id)
    assert (made.a, made.b, len(made.items), list(made.seats)) == ("1", "2", 8, ["1"])
    assert f"adaptflow review serve {session_id}" in line
