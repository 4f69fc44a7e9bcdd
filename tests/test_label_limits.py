"""Issue 27, finding 11 (labels): a label name ends up in the run's metric names
(`test_precision_<label>`, at most 250 characters) and in the registered version's tag keys
(`metric.test_precision_<label>`, also at most 250): the gate refuses a label that would fail the
longer one, naming the label, its length and the limit, before anything trains. Checked
against MLflow's own store (sqlite), not a copy of its rules."""
from __future__ import annotations

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from conftest import fresh_store

from tasks.config import DataSettings, ValidationSettings
from tasks.data.contract import RawContract, validate_raw
from tasks.tracking import PRECISION_PREFIX, VERSION_METRIC_TAG, longest_label, unloggable_labels


def contract() -> RawContract:
    data = DataSettings(source="x.csv", processed_dir="data/processed", split_seed=13, text_col="review",
                        label_col="stars")
    return RawContract(data, ValidationSettings([]))


def frame(labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"review": [f"text {i}" for i in range(len(labels))], "stars": labels})


def test_the_longest_label_is_what_the_registry_tag_key_allows():
    """MLflow 3.17: 250-character keys; `metric.test_precision_` is 22 characters."""
    assert longest_label() == 250 - len(f"{VERSION_METRIC_TAG}{PRECISION_PREFIX}") == 228


@pytest.mark.parametrize("length", [229, 235])
def test_a_label_too_long_for_the_registry_fails_the_raw_gate(length):
    """Old: 229..235 characters passed (the run's metric name fits 250) and the registration,
    after every strategy had trained, failed on the tag key `metric.test_precision_<label>`."""
    long = "x" * length
    report = validate_raw(frame(["short", long, "short", long]), contract(), "csv")
    assert not report.success
    text = report.message({"raw": "x.csv"})
    assert "failed label names MLflow can log" in text
    assert f"is {length} characters" in text and f"would be {length + 22}" in text
    assert "250-character key limit" in text and "at most 228 characters" in text and "data.label_map" in text


def test_a_label_of_the_longest_length_passes_and_registers(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)   # this test's own store, whatever ran before
    label = "y" * 228
    assert validate_raw(frame(["short", label, "short", label]), contract(), "csv").success
    assert unloggable_labels([label, "z" * 229]) == {"z" * 229: unloggable_labels(["z" * 229])["z" * 229]}
    # What the gate predicts is what MLflow does: the 228-character label's keys are accepted,
    # the 229-character one's registry tag is refused (and its run metric name is not).
    fresh_store(tmp_path)
    client = MlflowClient()
    client.create_registered_model("m")
    run = client.create_run(client.create_experiment("e", artifact_location=tmp_path.as_uri()))
    for name, fits in ((label, True), ("z" * 229, False)):
        client.log_metric(run.info.run_id, f"{PRECISION_PREFIX}{name}", 0.5)   # both fit 250
        tags = {f"{VERSION_METRIC_TAG}{PRECISION_PREFIX}{name}": "0.5"}
        if fits:
            client.create_model_version("m", source=tmp_path.as_uri(), tags=tags)
        else:
            with pytest.raises(MlflowException, match="250"):
                client.create_model_version("m", source=tmp_path.as_uri(), tags=tags)
