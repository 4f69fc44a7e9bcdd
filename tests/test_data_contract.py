"""Bad user data through the real specialize flow (Prefect harness, real DVC, Great Expectations
and MLflow, tiny BERT): every case stops before training with its own clear error, leaves one
FAILED MLflow run holding the validation result, and registers nothing."""
from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.specialize import DataInput, SpecializeInput, specialize
from tasks.tracking import use_store

EXPERIMENT = "adaptflow-rotten-tomatoes"
POSITIVE, NEGATIVE = ["moving", "funny", "sharp", "warm", "clever"], ["dull", "slow", "flat", "noisy", "stale"]


def reviews(n: int = 200) -> pd.DataFrame:
    """Distinct synthetic reviews, half good half bad, 40 authors with both; columns review/sentiment/author."""
    rows = []
    for i in range(n):
        good = i % 2 == 0
        word = (POSITIVE if good else NEGATIVE)[(i // 2) % 5]
        rows.append({"review": f"review {i}: a {word} film, {word} from start to finish (take {i * 7})",
                     "sentiment": "good" if good else "bad", "author": f"author{(i // 2) % 40}"})
    return pd.DataFrame(rows)


def with_split(df: pd.DataFrame) -> pd.DataFrame:
    """A split column: rows 0-139 train, 140-169 validation, 170-199 test."""
    return df.assign(part=["train"] * 140 + ["validation"] * 30 + ["test"] * 30)


def csv(df: pd.DataFrame, **kw) -> bytes:
    return df.to_csv(index=False, **kw).encode()


def _set(df, row, col, value):
    df = df.copy()
    df.loc[row, col] = value
    return df


def _invalid_utf8() -> bytes:
    lines = csv(reviews()).split(b"\n")
    lines[7] = lines[7].replace(b"review", b"r\xe9view", 1)   # latin-1 "é" in data row 6 (line 8)
    return b"\n".join(lines)


COLS = {"text_col": "review", "label_col": "sentiment"}
# case -> (file bytes, DataInput keys, snippets the error must contain)
CASES = {
    "missing_column": (csv(reviews().drop(columns=["sentiment"])), COLS,
                       ["raw: column 'sentiment' failed expect_column_to_exist"]),
    "null_labels": (csv(_set(_set(reviews(), 3, "sentiment", None), 8, "sentiment", None)), COLS,
                    ["raw: column 'sentiment' failed expect_column_values_to_not_be_null (2 row(s))",
                     "row 3 (line 5 after the header): review='review 3"]),
    "empty_strings": (csv(_set(reviews(), 4, "review", "   ")), COLS,
                      ["raw: column 'review' failed expect_column_values_to_not_match_regex (1 row(s))",
                       "row 4 (line 6 after the header): review='   '"]),
    "unknown_label": (csv(_set(reviews(), 5, "sentiment", "meh")), {**COLS, "labels": ["bad", "good"]},
                      ["raw: column 'sentiment' failed expect_column_values_to_be_in_set (1 row(s))",
                       "sentiment='meh'"]),
    "single_class": (csv(reviews().assign(sentiment="good")), COLS,
                     ["expect_column_unique_value_count_to_be_between [observed 1; min_value=2"]),
    "duplicate_rows": (csv(with_split(_set(reviews(), 11, "review", reviews().loc[10, "review"].upper()))),
                       {**COLS, "split_col": "part"},
                       ["train: column 'text (normalised)' failed expect_column_values_to_be_unique (2 row(s))"]),
    "cross_split_leakage": (csv(with_split(_set(reviews(), 180, "review", reviews().loc[12, "review"]))),
                            {**COLS, "split_col": "part"},
                            ["test: column 'text (normalised: also in another split)' failed "
                             "expect_column_values_to_be_null (1 row(s))"]),
    "group_leakage": (csv(with_split(reviews())), {**COLS, "split_col": "part", "group_col": "author"},
                      ["column 'group (also in another split)' failed expect_column_values_to_be_null"]),
    # A few long texts are a warning (tests/test_validation.py); most of them truncated is a refusal.
    "most_texts_truncated": (csv(reviews().assign(review=lambda d: d["review"] + " and on" * 300)), COLS,
                             ["column 'text (tokens)' failed expect_column_values_to_be_between",
                              "max_value=32", "mostly=0.5"]),
    "invalid_utf8": (_invalid_utf8(), COLS, ["file_decodes_as_utf-8", "line 8, column 3", "data.encoding"]),
    "empty_file": (b"", COLS, ["expect_table_row_count_to_be_between [observed 0", "no data rows"]),
    "wrong_delimiter": (csv(reviews(), sep=";"), COLS,
                        ["failed expect_column_to_exist", "separated by semicolons", "data.delimiter"]),
    "thousands_of_labels": (csv(reviews(3000).assign(sentiment=[f"topic{i}" for i in range(3000)])), COLS,
                            ["expect_column_unique_value_count_to_be_between [observed 3000", "max_value=100"]),
    "a_class_too_rare": (csv(reviews().assign(sentiment=["bad" if i < 12 else "good" for i in range(200)])), COLS,
                         ["failed expect_column_values_to_be_between",
                          "column 'label (rows of this label in the split)'"]),
    "bad_split_values": (csv(with_split(reviews()).assign(part=["train"] * 150 + ["holdout"] * 50)),
                         {**COLS, "split_col": "part"},
                         ["raw: column 'split' failed expect_column_values_to_be_in_set (50 row(s))"]),
}



def tiny_project(project_factory, tiny_bert):
    return project_factory({"model": {"base": str(tiny_bert)}, "strategies": {"run": ["lora"]}})


def assert_nothing_trained_or_registered(project, gate: str):
    use_store(project)
    client = MlflowClient()
    # The params' experiment, or (a --data file) the one named after the file.
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, "only the parent run: no strategy run started"
    run = runs[0]
    assert run.info.status == "FAILED" and run.data.tags["validation"] == "failed"
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, f"validation/{gate}")]
    assert f"validation/{gate}/summary.json" in artifacts
    assert client.search_registered_models() == []
    return client, run


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_stops_the_flow_before_training(case, harness, project_factory, tiny_bert, tmp_path):
    content, keys, snippets = CASES[case]
    path = tmp_path / f"{case}.csv"
    path.write_bytes(content)
    project = tiny_project(project_factory, tiny_bert)
    state = specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke",
                                       data=DataInput(path=str(path), **keys)), return_state=True)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert "nothing was trained or registered" in message
    for snippet in snippets:
        assert snippet in message, (case, snippet, message)
    gate = "raw" if "data validation failed (raw)" in message else "splits"
    client, run = assert_nothing_trained_or_registered(project, gate)
    summary = client.download_artifacts(run.info.run_id, "validation/summary.json")
    assert '"success": false' in open(summary).read()


def test_the_cli_prints_the_error_without_a_traceback(harness, project_factory, tiny_bert, tmp_path, capsys):
    from flows.cli import main

    project = tiny_project(project_factory, tiny_bert)
    path = tmp_path / "latin1.csv"
    path.write_bytes(_invalid_utf8())
    code = main(["run", "--params", str(project / "params.yaml"), "--profile", "smoke", "--data", str(path),
                 "--text-col", "review", "--label-col", "sentiment"])
    err = capsys.readouterr().err
    assert code == 2 and "adaptflow run stopped: data validation failed (raw)" in err
    assert "latin1.csv: line 8, column 3" in err and "Traceback" not in err
    client, run = assert_nothing_trained_or_registered(project, "raw")
    assert main(["run", "--params", str(project / "params.yaml"), "--text-col", "review"]) == 2
    assert "--text-col describe(s) a file given with --data FILE" in capsys.readouterr().err
    assert main(["run", "--params", str(project / "params.yaml"), "--data", str(tmp_path / "nope.csv")]) == 2
    assert "--data " + str(tmp_path / "nope.csv") + ": no such file" in capsys.readouterr().err
