from tasks.registry.decisions import Reference, decide_challenger

M = "test_macro_f1"


def ref(alias, metric, data="d1", version="1"):
    return Reference(alias=alias, version=version, metric=metric, data_version=data)


def test_first_candidate_becomes_challenger():
    d = decide_challenger(M, 0.8, "d1", [], 0.0)
    assert d.set_challenger and "no comparable" in d.reasons[-1]


def test_must_beat_champion_and_challenger_by_margin():
    refs = [ref("champion", 0.80), ref("challenger", 0.82, version="2")]
    assert decide_challenger(M, 0.83, "d1", refs, 0.0).set_challenger
    assert not decide_challenger(M, 0.81, "d1", refs, 0.0).set_challenger   # beats champion only
    assert not decide_challenger(M, 0.825, "d1", refs, 0.01).set_challenger  # not by the margin


def test_equal_score_does_not_move_the_alias():
    d = decide_challenger(M, 0.82, "d1", [ref("challenger", 0.82)], 0.0)
    assert not d.set_challenger
    assert "does not beat @challenger" in d.reasons[0]


def test_other_test_data_is_not_comparable():
    d = decide_challenger(M, 0.5, "d2", [ref("champion", 0.9, data="d1")], 0.0)
    assert d.set_challenger
    assert "not comparable" in d.reasons[0]


def test_budgets_apply_where_measured():
    budgets = {"max_ece": 0.1, "max_artifact_bytes": 1e6, "max_latency_ms": None}
    d = decide_challenger(M, 0.9, "d1", [], 0.0, {"val_ece": 0.2, "artifact_bytes": 5e5}, budgets)
    assert not d.set_challenger and "val_ece 0.2 is over max_ece=0.1" in d.reasons[0]
    # ECE not measured: the artifact budget still applies, the ECE one cannot
    assert decide_challenger(M, 0.9, "d1", [], 0.0, {"artifact_bytes": 5e5}, budgets).set_challenger
    assert not decide_challenger(M, 0.9, "d1", [], 0.0, {"artifact_bytes": 9e7}, budgets).set_challenger


def test_a_model_of_another_task_or_data_is_not_a_comparable_reference():
    """Two projects under one registered name: the Q/A version holding @challenger was re-scored on
    the abstracts' validation set and replaced. Another kind is not compared, and no alias moves."""
    from tasks.registry.decisions import Kind

    qa, abstracts = Kind("generation", "qa.jsonl"), Kind("generation", "abstracts.jsonl")
    held = Reference("challenger", "1", 0.15, "d1", qa)
    d = decide_challenger("val_rougeL", 0.9, "d2", [held], 0.0, kind=abstracts)
    assert not d.set_challenger
    assert "@challenger (v1) is a generation model of qa.jsonl" in d.reasons[0]
    assert "not comparable, so no alias moves" in d.reasons[0]
    other_task = decide_challenger("val_rougeL", 0.9, "d1", [held], 0.0, kind=Kind("classification", "qa.jsonl"))
    assert not other_task.set_challenger
    # The same kind competes as before; a version recorded without a kind is compared as before.
    assert decide_challenger("val_rougeL", 0.2, "d1", [held], 0.0, kind=qa).set_challenger
    legacy = Reference("challenger", "1", 0.15, "d1")
    assert decide_challenger("val_rougeL", 0.2, "d1", [legacy], 0.0, kind=abstracts).set_challenger
