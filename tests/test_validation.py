import pandas as pd

from tasks.validation import validate_splits

LABELS = ["negative", "positive"]


def good():
    return {
        "train": pd.DataFrame({"text": ["fine film", "bad film", "ok"], "label": ["positive", "negative", "positive"]}),
        "validation": pd.DataFrame({"text": ["lovely"], "label": ["positive"]}),
        "test": pd.DataFrame({"text": ["awful"], "label": ["negative"]}),
    }


def test_clean_splits_pass():
    report = validate_splits(good(), LABELS, 1, 100)
    assert report.success and report.evaluated > 20


def test_empty_text_names_expectation_column_and_row():
    frames = good()
    frames["train"].loc[1, "text"] = "   "
    report = validate_splits(frames, LABELS, 1, 100)
    assert not report.success
    message = report.message({"train": "data/processed/train.parquet"})
    assert "train: column 'text' failed expect_column_values_to_not_match_regex (1 row(s))" in message
    assert "row 1: text='   ', label='negative'" in message
    assert "data/processed/train.parquet" in message and "nothing was trained" in message


def test_leakage_unknown_label_and_missing_column():
    frames = good()
    frames["test"].loc[0, "text"] = "Fine   FILM"          # same as a train text once normalised
    frames["validation"].loc[0, "label"] = "neutral"
    frames["train"] = frames["train"].drop(columns=["label"])
    failures = {(f.split, f.expectation.split()[0]) for f in validate_splits(frames, LABELS, 1, 100).failures}
    assert ("test", "expect_column_values_to_not_be_in_set") in failures
    assert ("validation", "expect_column_values_to_be_in_set") in failures
    assert ("train", "expect_column_to_exist") in failures
