"""Learning from production, part two: feedback becomes data. Conflicts (majority, ties dropped),
test-split inputs excluded, the contract's quarantine (real Great Expectations), the merge (test
split untouched, new rows to train/validation only), and fold-feedback through a real outcome
store, Prefect and DVC: a new data version whose test split keeps its hash, and a retrain decision
that sees it."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from tasks.config import ValidationSettings
from tasks.data.feedback import merge
from tasks.data.feedback_fold import exclude, fold, quarantine, resolve_conflicts

LABELS = ["neg", "pos"]


def votes(*rows) -> pd.DataFrame:
    return pd.DataFrame([{"text": t, "answer": a, "request_id": f"r{i}", "version": "1", "at": float(i)}
                         for i, (t, a) in enumerate(rows)])


def test_conflicts_go_to_the_majority_and_ties_are_dropped_and_counted():
    table, counts = resolve_conflicts(votes(("a film", "pos"), ("A  film", "pos"), ("a film", "neg"),
                                            ("tie", "pos"), ("tie", "neg"), ("alone", "neg")))
    assert sorted(zip(table["text"], table["answer"])) == [("a film", "pos"), ("alone", "neg")]
    assert counts == {"inputs": 3, "conflicting_inputs": 2, "resolved_by_majority": 1, "dropped_ties": 1}
    assert table.loc[table["text"] == "a film", "request_id"].item() == "r0"   # the first vote for the winner


def test_test_inputs_are_excluded_and_refused_rows_are_quarantined_with_the_reason():
    table, _ = resolve_conflicts(votes(("In The Test", "pos"), ("fine", "pos"), ("fine too", "meh"),
                                       ("   ", "neg"), ("x" * 30, "neg")))
    kept, in_test = exclude(table, pd.Series(["in the  test", "other"]))
    assert in_test == 1 and "In The Test" not in set(kept["text"])
    ok, refused = quarantine(kept, LABELS, ValidationSettings(text_max_chars=20), has_labels=True)
    assert list(ok["text"]) == ["fine"]
    reasons = dict(zip(refused["text"], refused["reason"]))
    assert reasons["fine too"] == "expect_column_values_to_be_in_set (answer)"
    assert "expect_column_values_to_not_match_regex (text)" in reasons["   "]
    assert reasons["x" * 30] == "expect_column_value_lengths_to_be_between (text)"
    folded = fold(votes(("fine", "pos"), ("fine", "neg"), ("good", "pos")), pd.Series(["good"]), LABELS,
                  ValidationSettings(), True)
    assert folded.counts == {"votes": 3, "inputs": 2, "conflicting_inputs": 1, "resolved_by_majority": 0,
                             "dropped_ties": 1, "excluded_test_inputs": 1, "quarantined": 0, "rows": 0}


def test_the_merge_leaves_the_test_split_as_it_was_and_places_rows_the_same_way_every_time():
    parts = {"train": pd.DataFrame({"text": [f"train {i}" for i in range(8)], "label": ["neg", "pos"] * 4, "g": "a"}),
             "validation": pd.DataFrame({"text": ["val 0", "val 1"], "label": ["neg", "pos"], "g": "b"}),
             "test": pd.DataFrame({"text": ["test 0", "test 1"], "label": ["neg", "pos"], "g": "c"})}
    table = pd.DataFrame({"text": [f"new {i}" for i in range(40)] + ["Train 3"], "answer": ["pos"] * 41})
    merged, counts = merge(parts, table, "label")
    assert merged["test"] is parts["test"]
    assert counts["already_in_source"] == 1 and counts["train"] + counts["validation"] == 40
    assert 0 < counts["validation"] < 20   # about the source's validation share (2 of 10)
    assert len(merged["train"]) == 8 + counts["train"] and list(merged["train"].columns) == ["text", "label", "g"]
    assert merged["train"]["g"].iloc[-1].startswith("feedback-")   # its own group: never shared across splits
    again, _ = merge(parts, table.iloc[::-1], "label")
    assert set(again["validation"]["text"]) == set(merged["validation"]["text"])


def test_a_new_feedback_version_is_a_changed_source_for_retrain():
    from tasks.ops.retrain import Inputs, decide

    last = Inputs(data="d" * 32, code="c", params="p")
    assert not decide(Inputs(data="d" * 32, code="c", params="p"), last).retrain
    verdict = decide(Inputs(data="d" * 32, code="c", params="p", feedback="f" * 32), last)
    assert verdict.retrain and "feedback (unrecorded) -> ffffffff" in verdict.reason


# ---- fold-feedback through the outcome store, Prefect and DVC --------------------------------
def test_fold_feedback_makes_a_new_data_version_with_the_test_split_unchanged(tmp_path, harness, monkeypatch, capsys):
    from flows.cli import main
    from tasks.config import load_settings
    from tasks.data.dvc import reproduce_ingest, reproduce_splits
    from tasks.outcomes.feedback import Answered, store_feedback
    from tasks.outcomes.store import OutcomeStore, RequestText
    from tasks.serving.feedback import feedback_row

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "proj"
    assert main(["init", str(root)]) == 0
    csv = tmp_path / "reviews.csv"
    pd.DataFrame({"review": [f"review number {i} is {'good' if i % 2 else 'bad'}" for i in range(200)],
                  "sentiment": ["pos" if i % 2 else "neg" for i in range(200)]}).to_csv(csv, index=False)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"].update(source=str(csv), text_col="review", label_col="sentiment", group_col=None, label_map={},
                          drop_labels=[], validation_size=0.1, test_size=0.2, dvc_remote=str(tmp_path / "remote"))
    params["validation"].update(text_max_chars=100, labels=[])
    params["project"]["registered_model"] = "reviews"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    settings = load_settings(root / "params.yaml")
    raw = reproduce_ingest(root, settings.data, csv, tmp_path / "remote", settings.feedback.folder)
    first = reproduce_splits(root, settings.data, raw, tmp_path / "remote")
    test_text = pd.read_parquet(first.split_files["test"])["text"].iloc[0]
    train_text = pd.read_parquet(first.split_files["train"])["text"].iloc[0]
    before = {s: len(pd.read_parquet(f)) for s, f in first.split_files.items()}   # the same paths are rewritten

    from tasks.config.stores import database_url

    store = OutcomeStore(database_url("outcomes.store", settings.outcomes.store, root))
    def give(text: str, label: str, client: str) -> str:
        rid = f"{abs(hash((text, client))):032d}"[:32]
        store.write([], texts=[RequestText(rid, 1.0, "reviews", "1", "classification", [text], ["neg"], LABELS)])
        found = Answered(rid, "reviews", "1", "classification", [text], ["neg"], LABELS)
        return store_feedback(store, feedback_row({"request_id": rid, "label": label}, found, client), settings.feedback)
    for i in range(30):
        assert give(f"a new review {i}", LABELS[i % 2], "app") == "recorded"
    for text, label, client in [("split vote", "pos", "c1"), ("split vote", "pos", "c2"), ("split vote", "neg", "c3"),
                                ("even vote", "pos", "c1"), ("even vote", "neg", "c2"), (test_text, "pos", "c1"),
                                (train_text, "pos", "c4"), ("y" * 150, "pos", "c1")]:
        assert give(text, label, client) == "recorded"
    store.dispose()

    assert main(["feedback", "fold", "--params", str(root / "params.yaml")]) == 0
    out = capsys.readouterr().out
    summary = json.loads((root / "data" / "feedback" / "summary.json").read_text())
    counts = summary["counts"]
    assert (counts["votes"], counts["conflicting_inputs"], counts["dropped_ties"], counts["excluded_test_inputs"],
            counts["quarantined"], counts["rows"]) == (38, 2, 1, 1, 1, 32), counts
    assert "rows 32" in out and (root / "data" / "feedback" / "feedback.csv.dvc").is_file()
    quarantined = pd.read_csv(root / "data" / "feedback" / "quarantine.csv")
    assert quarantined["reason"].tolist() == ["expect_column_value_lengths_to_be_between (text)"]

    raw = reproduce_ingest(root, settings.data, csv, tmp_path / "remote", settings.feedback.folder)
    second = reproduce_splits(root, settings.data, raw, tmp_path / "remote")
    assert second.split_hashes["test"] == first.split_hashes["test"]      # same rows, same hash
    assert second.version != first.version and second.feedback_md5
    sizes = {s: len(pd.read_parquet(f)) for s, f in second.split_files.items()}
    assert sizes["test"] == before["test"]
    assert sizes["train"] + sizes["validation"] == before["train"] + before["validation"] + 31   # the train text stays the source's
    merged = pd.concat([pd.read_parquet(second.split_files[s]) for s in ("train", "validation")])
    assert merged.loc[merged["text"] == "split vote", "label"].tolist() == ["pos"]
    assert "even vote" not in set(merged["text"]) and test_text not in set(merged["text"])
    source = pd.read_csv(csv).set_index("review")["sentiment"]
    assert merged.loc[merged["text"] == train_text, "label"].tolist() == [source[train_text]]   # the source's label stands
