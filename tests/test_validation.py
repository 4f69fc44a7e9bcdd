"""The data contract (tasks/data/contract.py) with the real Great Expectations, and drift (pure)."""
import re
from dataclasses import replace

import pandas as pd

from tasks.config import DataSettings, ValidationSettings
from tasks.data.contract import RawContract, SplitContract, validate_raw, validate_splits
from tasks.data.drift import DataProfile, drift, profile

LABELS = ["negative", "positive"]
CONTRACT = SplitContract(ValidationSettings(LABELS, min_examples_per_label=1, max_class_share=1.0), max_length=8)


def dataset(text_col: str, label_col: str, **keys) -> DataSettings:
    return DataSettings(source="x.csv", processed_dir="data/processed", split_seed=13, text_col=text_col,
                        label_col=label_col, **keys)


def words(texts):
    return [len(t.split()) + 2 for t in texts]   # a stand-in tokenizer: words + [CLS] + [SEP]


def good():
    return {
        "train": pd.DataFrame({"text": ["fine film", "bad film", "ok"], "label": ["positive", "negative", "positive"]}),
        "validation": pd.DataFrame({"text": ["lovely", "dull"], "label": ["positive", "negative"]}),
        "test": pd.DataFrame({"text": ["awful", "great"], "label": ["negative", "positive"]}),
    }


def kinds(report):
    return {(f.gate, f.expectation, f.column) for f in report.failures}


def test_clean_splits_pass_and_write_data_docs(tmp_path):
    report = validate_splits(good(), CONTRACT, words, tmp_path / "docs")
    assert report.success and report.evaluated > 30, report.failures
    assert (tmp_path / "docs" / "index.html").is_file()
    assert len(list((tmp_path / "docs" / "validations").rglob("*.html"))) == 3
    # A second build in this process reuses the compiled templates and writes the same pages
    # (tasks/data/contract.py: _CompiledTemplates), apart from the run's time stamps.
    from tasks.data.contract import _CompiledTemplates

    assert _CompiledTemplates._cache is not None and _CompiledTemplates._cache.code
    validate_splits(good(), CONTRACT, words, tmp_path / "again")
    stamp = lambda text: re.sub(r"\d{8}T\d{6}\.\d+Z|\d{4}-\d\d-\d\d[T ][\d:.]+|_run_time_sort': [\d.]+", "T", text)
    pages = sorted(p.relative_to(tmp_path / "docs") for p in (tmp_path / "docs").rglob("*.html"))
    again = sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*.html"))
    assert [stamp(str(p)) for p in pages] == [stamp(str(p)) for p in again]
    for one, two in zip(pages, again):
        assert stamp((tmp_path / "docs" / one).read_text()) == stamp((tmp_path / "again" / two).read_text()), one


def test_empty_text_names_expectation_column_and_row():
    frames = good()
    frames["train"].loc[1, "text"] = "   "
    report = validate_splits(frames, CONTRACT, words)
    message = report.message({"train": "data/processed/train.parquet"})
    assert "train: column 'text' failed expect_column_values_to_not_match_regex (1 row(s))" in message
    assert "row 1: text='   ', label='negative'" in message
    assert "data/processed/train.parquet" in message and "nothing was trained" in message


def test_leakage_duplicates_unknown_label_balance_and_missing_column():
    frames = good()
    frames["test"].loc[0, "text"] = "Fine   FILM"          # a train text once normalised
    frames["validation"].loc[0, "label"] = "neutral"
    frames["train"] = pd.concat([frames["train"], frames["train"].iloc[[0]]], ignore_index=True)
    found = kinds(validate_splits(frames, CONTRACT, words))
    assert ("test", "expect_column_values_to_be_null", "text (normalised: also in another split)") in found
    assert ("train", "expect_column_values_to_be_unique", "text (normalised)") in found
    assert ("validation", "expect_column_values_to_be_in_set", "label") in found
    assert ("validation", "expect_column_distinct_values_to_contain_set", "label") in found   # no negative left
    frames = good()
    frames["train"] = frames["train"].drop(columns=["label"])
    found = kinds(validate_splits(frames, CONTRACT, words))
    assert ("train", "expect_column_to_exist", "label") in found


def test_groups_tokens_and_class_share():
    frames = {s: f.assign(author=[f"{s}{i}" for i in range(len(f))]) for s, f in good().items()}
    frames["test"].loc[0, "author"] = "train0"
    frames["train"].loc[2, "text"] = "one two three four five six seven"   # 9 tokens > max_length 8
    strict = SplitContract(ValidationSettings(LABELS, min_examples_per_label=2, max_class_share=0.6,
                                              max_share_over_max_length=0.1), group_col="author", max_length=8)
    report = validate_splits(frames, strict, words)
    found = kinds(report)
    assert ("test", "expect_column_values_to_be_null", "group (also in another split)") in found
    assert ("train", "expect_column_values_to_be_between", "text (tokens)") in found
    assert ("train", "expect_column_max_to_be_between", "label (share of the split)") in found
    assert ("validation", "expect_column_values_to_be_between", "label (rows of this label in the split)") in found


def raw(**columns):
    return pd.DataFrame(columns)


def test_raw_gate_names_source_lines_and_infers_labels():
    c = RawContract(dataset("review", "stars"), ValidationSettings([], example_rows=3))
    frame = raw(review=["good", " ", "fine", "meh"], stars=["5", "1", None, "5"])
    report = validate_raw(frame, c, "csv")
    text = report.message({"raw": "data/raw/x.csv"})
    assert "raw: column 'review' failed expect_column_values_to_not_match_regex (1 row(s))" in text
    assert "row 1 (line 3 after the header): review=' ', stars='1'" in text
    assert "raw: column 'stars' failed expect_column_values_to_not_be_null" in text
    ok = validate_raw(raw(review=["good", "bad"], stars=["5", "1"]), c, "jsonl")
    assert ok.success and ok.labels == ["1", "5"] and ok.labels_inferred


def test_raw_gate_packaged_rules_and_class_counts():
    c = RawContract(dataset("text", "category", group_col="movie_name",
                            label_map={"fresh": "positive", "rotten": "negative"}, drop_labels=["plot"],
                            drop_empty_texts=True), ValidationSettings(LABELS))
    frame = raw(text=["a", "", "c" * 5000], category=["fresh", "rotten", "plot"], movie_name=["m", "m", "n"])
    assert validate_raw(frame, c, "csv").success   # empty text dropped later; the long one is a plot row
    bad = validate_raw(raw(text=["a", "b"], category=["fresh", "meh"], movie_name=["m", "n"]), c, "csv")
    assert ("raw", "expect_column_values_to_be_in_set", "category") in kinds(bad)
    many = validate_raw(raw(t=[f"x{i}" for i in range(300)], y=[str(i) for i in range(300)]),
                        RawContract(dataset("t", "y"), ValidationSettings([], max_classes=100)), "csv")
    failure = next(f for f in many.failures if f.expectation == "expect_column_unique_value_count_to_be_between")
    assert "observed 300" in failure.detail and "max_value=100" in failure.detail


def test_drift_warns_on_label_and_length_shift_only_past_thresholds():
    before = profile(good(), "v1")
    assert drift(before, profile(good(), "v2"), 0.1, 0.2) == []
    shifted = {s: f.assign(label="positive", text=f["text"] + " " + "x" * 40) for s, f in good().items()}
    warnings = drift(before, profile(shifted, "v2"), 0.1, 0.2)
    assert [w.measure for w in warnings] == ["label_tvd", "length_psi"]
    assert "since data version v1" in warnings[0].message and warnings[0].value == 0.4286
    assert DataProfile(**before.to_dict()) == before   # round-trips through the logged JSON


def test_a_few_long_texts_are_a_warning_with_their_rows_not_a_refusal():
    """Articles of several thousand characters pass; the rows and the tokens cut are named."""
    frames = good()
    short = pd.DataFrame({"text": [f"short review {i}" for i in range(60)], "label": ["positive", "negative"] * 30})
    train = pd.concat([frames["train"], short], ignore_index=True)
    train.loc[0, "text"] = "a long article " * 400     # 6,000 characters, 1,202 "tokens"
    train.loc[1, "text"] = "another long one " * 300
    report = validate_splits({**frames, "train": train}, replace(CONTRACT, max_length=64), words)
    assert report.success, report.failures
    warning = next(w for w in report.warnings if "exceed model.max_length=64" in w)
    assert "2 of 63 example(s)" in warning and "row 0 (1202 tokens, 1138 cut)" in warning


def test_label_names_mlflow_cannot_log_fail_the_raw_gate_before_training():
    """`4+ stars` would train every strategy, then fail to log
    `test_precision_4+ stars`; the raw gate refuses it, names the setting that fixes it, and a
    label_map that renames it passes. MLflow itself refuses the name (checked here)."""
    import mlflow
    import pytest
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_metric_name

    c = RawContract(dataset("review", "stars"), ValidationSettings([]))
    frame = raw(review=["great", "poor", "fine"], stars=["4+ stars", "1 star", "a/../b"])
    report = validate_raw(frame, c, "csv")
    assert not report.success
    text = report.message({"raw": "x.csv"})
    assert "failed label names MLflow can log" in text and "label '4+ stars'" in text and "label 'a/../b'" in text
    assert "label '1 star'" not in text and "data.label_map" in text
    renamed = RawContract(dataset("review", "stars", label_map={"4+ stars": "4plus stars", "a/../b": "a-b", "1 star": "1 star"}),
                          ValidationSettings([]))
    assert validate_raw(frame, renamed, "csv").success
    from tasks.tracking import unloggable_labels

    assert set(unloggable_labels(["ok", "x" * 240, "é:ü", "tab\there"])) == {"x" * 240, "tab\there"}
    with pytest.raises(MlflowException):
        _validate_metric_name("test_precision_4+ stars")
    assert mlflow   # the rule above is MLflow's own validator, not a copy


def test_data_docs_escape_labels_and_texts(tmp_path):
    """A label or text such as `<script>alert(1)</script>` appears in the Great
    Expectations Data Docs (unexpected values) as text, never as markup; the gate's own message
    still quotes it as it is."""
    payload, image = "<script>alert(1)</script>", "<img src=x onerror=alert(2)>"
    c = RawContract(dataset("text", "label"), ValidationSettings(["a", payload]))
    frame = raw(text=[f"good {payload}", "bad", image], label=[payload, f"b{payload}", image])
    report = validate_raw(frame, c, "csv", docs_dir=tmp_path / "docs")
    assert not report.success and f"b{payload}" in report.message({"raw": "x.csv"})
    pages = list((tmp_path / "docs").rglob("*.html"))
    assert len(pages) >= 2
    shown = 0
    for page in pages:
        text = page.read_text()
        assert payload not in text and image not in text, page
        shown += text.count("&lt;script&gt;alert(1)&lt;/script&gt;")
    assert shown >= 2   # the values are there, as text
    splits = good()
    splits["train"].loc[0, "label"] = payload
    split_report = validate_splits(splits, CONTRACT, words, tmp_path / "split-docs")
    assert not split_report.success
    assert all(payload not in p.read_text() for p in (tmp_path / "split-docs").rglob("*.html"))


def test_a_gates_key_changes_with_each_input_and_reuse_needs_the_earlier_evidence(tmp_path, monkeypatch):
    """tasks/data/gate_reuse.py: the key covers the inputs, the code and GE's version; an earlier
    run whose evidence is gone (or that failed) is not reused, so the gate runs."""
    import importlib.metadata

    from conftest import fresh_store
    from mlflow.tracking import MlflowClient

    import mlflow
    from tasks.data import gate_reuse
    from tasks.tracking import log_json

    contract = {"contract": {"max_length": 64}, "md5": {"train": "a1"}}
    key = gate_reuse.gate_key("splits", tmp_path, contract)
    assert key == gate_reuse.gate_key("splits", tmp_path, dict(contract))
    assert key != gate_reuse.gate_key("raw", tmp_path, contract)
    assert key != gate_reuse.gate_key("splits", tmp_path, {**contract, "md5": {"train": "a2"}})
    assert key != gate_reuse.gate_key("splits", tmp_path, {**contract, "contract": {"max_length": 32}})
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")   # code.version covers the project's dvc.yaml
    assert key != gate_reuse.gate_key("splits", tmp_path, contract)
    key = gate_reuse.gate_key("splits", tmp_path, contract)
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda n: "0.0" if n == "great_expectations" else real(n))
    assert key != gate_reuse.gate_key("splits", tmp_path, contract)

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    fresh_store(tmp_path)
    experiment = mlflow.create_experiment("gates", artifact_location=(tmp_path / "artifacts").as_uri())
    client = MlflowClient()
    earlier, failed, now = (client.create_run(experiment).info.run_id for _ in range(3))
    summary = {"gate": "splits", "success": True, "evaluated_expectations": 45, "labels": LABELS,
               "labels_inferred": False, "warnings": ["train: 6 long"], "failures": []}
    for run_id, passed in ((earlier, True), (failed, False)):
        log_json(run_id, {**summary, "success": passed}, "validation/splits/summary.json")
        log_json(run_id, {"train": {"success": passed}}, "validation/splits/great_expectations_results.json")
    client.set_tag(earlier, gate_reuse.key_tag("splits"), key)   # set on a pass only (tasks/data/steps.py)
    assert gate_reuse.reuse(failed, now, "splits") is None
    assert gate_reuse.reuse(now, now, "splits") is None   # no evidence in that run
    report = gate_reuse.reuse(earlier, now, "splits")
    assert (report.success, report.evaluated, report.labels, report.warnings) == (True, 45, LABELS, ["train: 6 long"])
    assert report.results == {"train": {"success": True}}
    assert {a.path for a in client.list_artifacts(now, "validation/splits")} == {
        "validation/splits/summary.json", "validation/splits/great_expectations_results.json"}
    assert gate_reuse.passed_earlier(now, "splits", key) == earlier
    assert gate_reuse.passed_earlier(earlier, "splits", key) is None   # not itself
    assert gate_reuse.passed_earlier(now, "splits", "another") is None
