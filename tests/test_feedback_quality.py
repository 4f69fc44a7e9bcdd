"""Feedback quality as a retrain trigger: what one feedback row says per task type, the verdict
(pure: off, no verdict under the minimum, evidence not a dip), the window read from a real SQLite
outcome store (the champion's version only, a flooding client's rows left out by the replayed
rules), and the drift-check flow under Prefect starting `retrain` with the finding as its trigger
and recording the verdict."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tasks.config import FeedbackSettings
from tasks.config.schema import SettingsError, parse_section
from tasks.outcomes.feedback import FeedbackRow, client_hash, store_feedback, text_hash
from tasks.outcomes.store import OutcomeStore
from tasks.release.feedback_quality import feedback_quality, judge, score

MODEL = "reviews"
ON = FeedbackSettings(retrain_below_quality=0.7, quality_min_rows=20, quality_window_rows=100, quality_alpha=0.05)


def row(i: int, label: str | None = "positive", answer: str | None = "positive", version: str = "1",
        client: str = "app", task: str = "classification", rating: int | None = None) -> FeedbackRow:
    text = f"review number {i}"
    return FeedbackRow(request_id=f"{i:032d}", item=0, client=client_hash(client), at=1000.0 + i, model=MODEL,
                       version=version, task=task, input=text, text_hash=text_hash(text), answer=answer, label=label,
                       rating=rating)


def test_what_a_feedback_row_says_comes_from_its_task_type():
    assert score(row(0, "positive", "positive")) == 1.0
    assert score(row(0, "negative", "positive")) == 0.0
    assert score(row(0, "negative", None)) is None            # an abstained answer showed no label
    assert score(row(0, None, None, task="generation", rating=5)) == 1.0
    assert score(row(0, None, None, task="generation", rating=2)) == 0.25
    assert score(row(0, None, None, task="generation")) is None   # a corrected output alone does not rate


def test_the_verdict_needs_the_setting_enough_rows_and_evidence():
    low = [1.0] * 10 + [0.0] * 20                              # 0.33 agreement on 30 rows
    off = judge(MODEL, "3", low, FeedbackSettings())
    assert not off.retrain and "retrain_below_quality is null" in off.reason
    few = judge(MODEL, "3", low[:19] + [None] * 50, ON)
    assert not few.retrain and few.judged == 19 and "feedback.quality_min_rows=20: no verdict" in few.reason
    verdict = judge(MODEL, "3", low + [None], ON)
    assert verdict.retrain and verdict.rows == 31 and verdict.judged == 30
    assert verdict.quality == pytest.approx(1 / 3) and verdict.upper < 0.7
    assert "reviews v3" in verdict.reason and "< feedback.retrain_below_quality=0.7" in verdict.reason
    # 0.65 on 20 rows is under the setting, but not surely: its upper bound is above 0.7
    dip = judge(MODEL, "3", [1.0] * 13 + [0.0] * 7, ON)
    assert dip.quality == pytest.approx(0.65) and dip.upper > 0.7 and not dip.retrain
    assert "not under feedback.retrain_below_quality" in dip.reason
    # the same share on 400 rows is evidence
    assert judge(MODEL, "3", ([1.0] * 13 + [0.0] * 7) * 20, ON).retrain


@pytest.mark.parametrize("bad", [{"retrain_below_quality": 0}, {"retrain_below_quality": 1.5},
                                 {"quality_min_rows": 5}, {"quality_window_rows": 50, "quality_min_rows": 60},
                                 {"quality_alpha": 0.5}])
def test_bad_quality_settings_are_refused_naming_the_key(bad):
    with pytest.raises(SettingsError, match=f"feedback.*{next(iter(bad))}"):
        parse_section(FeedbackSettings, bad, "feedback")


def test_the_window_is_the_champions_latest_accepted_feedback(tmp_path):
    store = OutcomeStore(f"sqlite:///{tmp_path / 'outcomes.db'}")
    rules = FeedbackSettings(retrain_below_quality=0.7, quality_min_rows=20, quality_window_rows=40,
                             flood_min_rows=10, flood_max_share=0.8)
    # version 1: 8 of 10 wrong (an older version); version 2: 30 of 40 right, then a client flooding
    # "negative" (each honest client's labels are mixed: at most 8 of its 10 alike, the flood share)
    for i in range(40):
        label = "positive" if i % 5 == 0 else "negative"
        assert store_feedback(store, row(i, label, "positive", version="1", client=f"old{i // 10}"), rules) == "recorded"
    for i in range(40, 80):
        label = "positive" if i % 4 else "negative"
        assert store_feedback(store, row(i, label, "positive", version="2", client=f"app{i // 10}"), rules) == "recorded"
    for i in range(80, 90):   # the first flood_min_rows of a flood get in at request time; replay drops them all
        assert store_feedback(store, row(i, "negative", "positive", version="2", client="flooder"), rules) == "recorded"
    champion = feedback_quality(store, MODEL, "2", rules)
    assert (champion.rows, champion.judged, champion.quality, champion.retrain) == (40, 40, 0.75, False)
    everyone = feedback_quality(store, MODEL, None, rules)        # no champion: every version's latest rows
    assert everyone.rows == 40 and everyone.quality == 0.75
    old = feedback_quality(store, MODEL, "1", rules)
    assert old.retrain and old.quality == pytest.approx(0.2)
    store.dispose()


def test_the_drift_check_starts_retrain_with_the_quality_finding(tmp_path, harness, monkeypatch):
    import flows.retrain
    from flows.drift import drift_check
    from flows.inputs import DriftCheckInput
    from tasks.config.stores import database_url

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "proj"
    root.mkdir()
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())   # the shipped file
    params["project"]["registered_model"] = MODEL
    params["feedback"].update(retrain_below_quality=0.7, quality_min_rows=20, quality_window_rows=100)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    store = OutcomeStore(database_url("outcomes.store", params["outcomes"]["store"], root))
    for i in range(30):
        store_feedback(store, row(i, "negative" if i % 3 else "positive", "positive", client=f"app{i % 3}"),
                       FeedbackSettings())
    started = []
    monkeypatch.setattr(flows.retrain, "retrain", lambda run: started.append(run) or
                        type("Out", (), {"reason": "changed since the last successful run: feedback"})())
    lines = drift_check(DriftCheckInput(params_file=str(root / "params.yaml")))
    assert len(started) == 1 and started[0].force and started[0].params_file == str(root / "params.yaml")
    assert "feedback quality on reviews (the share of feedback labels equal to the label shown) 0.333" in started[0].trigger
    assert "no stored request texts" in lines[0] and lines[0].endswith("retrain: changed since the last successful run: feedback")
    event = store.events(MODEL, 0, kind="feedback_quality")[-1]
    assert json.loads(event.detail)["retrain"] is True and json.loads(event.detail)["judged"] == 30
    params["feedback"]["retrain_below_quality"] = 0.2      # 0.33 is not under 0.2: no retrain
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    drift_check(DriftCheckInput(params_file=str(root / "params.yaml")))
    assert len(started) == 1
    store.dispose()
