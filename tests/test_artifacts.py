"""A version's folder and the one predict function (pure parts): the generation cap and the text
check are each one rule, shared by serving, re-scoring and the pyfunc."""
from __future__ import annotations

import numpy as np
import pytest

from tasks.artifacts.manifest import Manifest
from tasks.artifacts.predictor import Prediction, text_problem


def manifest(generation: dict | None) -> Manifest:
    return Manifest(strategy="lora", params={}, labels=[], max_length=64, base_name="b", base_fingerprint="0" * 64,
                    saves="adapter", task="generation", generation=generation)


def test_the_generation_cap_is_the_versions_own_lowered_never_raised_by_the_caller():
    own = manifest({"max_new_tokens": 6})
    assert own.new_tokens() == 6 and own.new_tokens(4) == 4 and own.new_tokens(8) == 6
    assert manifest(None).new_tokens(5) == 5
    with pytest.raises(ValueError, match="no max_new_tokens"):
        manifest(None).new_tokens()


def test_the_text_check_names_every_bad_position():
    assert text_problem(["fine", "also fine"]) is None
    assert text_problem(["ok", " ", 3, ""]) == "texts must be non-empty strings; bad at position(s) [1, 2, 3]"


def test_a_prediction_frame_is_what_the_pyfunc_returns():
    probs = np.array([[0.2, 0.8], [0.9, 0.1]])
    frame = Prediction(labels=["negative", "positive"], probs=probs).frame()
    assert frame["label"].tolist() == ["positive", "negative"] and frame["probability"].tolist() == [0.8, 0.9]
    assert frame["p_negative"].tolist() == [0.2, 0.9]
    assert Prediction(labels=[], outputs=["a headline"]).frame()["output"].tolist() == ["a headline"]
