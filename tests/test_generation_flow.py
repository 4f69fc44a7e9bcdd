"""Generation through the real specialize flow (Prefect harness, DVC, Great Expectations, MLflow)
on a tiny random Llama: the headlines profile end to end on the real BBC News files (smoke-sized
training), and the generation data contract refusing each bad case before anything trains."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.specialize import DataInput, SpecializeInput, specialize
from tasks.tasktypes.metrics import recorded
from tasks.tracking import use_store

GENERATION_METRICS = recorded("generation")   # what every generation run records (the catalogue)

TINY = {"ops": {"isolation": "none"},
        "train": {"max_train_examples": 32, "max_eval_examples": 12, "eval_every": 2, "batch_size": 4},
        "model": {"max_length": 96},
        "evaluation": {"forgetting_train_examples": 40, "forgetting_test_examples": 20, "forgetting_max_length": 32},
        "generation": {"max_new_tokens": 6, "latency_examples": 2,
                       "strategies": {"few_shot": {"k": 1, "variants": []},
                                      "zero_shot": {"variants": ["Give it a headline."]}}},
        "strategies": {"run": ["lora", "zero_shot", "few_shot", "retrieval_few_shot"]},
        # Six random tokens often run past 12 characters: the policy has something to count.
        "policy": {"max_output_chars": 12, "deny": {"digits": "[0-9]{3}"}}}


def project_for(project_factory, tiny_llama, extra: dict | None = None):
    return project_factory({"profiles": {"headlines": {**TINY, "model": {**TINY["model"], "base": str(tiny_llama)},
                                                      **(extra or {})}}})


def test_headlines_profile_runs_end_to_end_and_registers_a_generating_adapter(harness, project_factory, tiny_llama):
    from tasks.artifacts.fetch import fetch_version
    from tasks.artifacts.predictor import load_predictor, predict

    project = project_for(project_factory, tiny_llama)
    out = specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="headlines"))
    use_store(project)
    client = MlflowClient()
    children = client.search_runs([client.get_experiment_by_name("adaptflow-headlines").experiment_id],
                                  f"tags.mlflow.parentRunId = '{out.parent_run_id}'")
    assert sorted(r.data.tags["strategy"] for r in children) == ["few_shot", "lora", "retrieval_few_shot", "zero_shot"]
    for run in children:
        assert set(GENERATION_METRICS) <= set(run.data.metrics), run.data.tags["strategy"]
    parent = client.get_run(out.parent_run_id)
    dropped = json.load(open(client.download_artifacts(out.parent_run_id, "validation/dropped_rows.json")))
    assert dropped["not valid utf-8"]["count"] == 1 and dropped["duplicate (input, target) pair"]["count"] == 120
    assert parent.data.tags["task"] == "generation"
    # The retrieval index: a step of the flow, on the parent run, from the train split only.
    assert parent.data.metrics["retrieval_index_rows"] == json.load(open(client.download_artifacts(
        out.parent_run_id, "retrieval_index/index.json")))["identity"]["rows"] > 0
    retrieving = next(r for r in children if r.data.tags["strategy"] == "retrieval_few_shot")
    chosen = json.load(open(client.download_artifacts(retrieving.info.run_id, "prompt_variants.json")))
    assert chosen["variants"][0]["params"]["data_version"] == parent.data.tags["retrieval_index.data_version"]
    assert retrieving.data.metrics["retrieval_ms_p50"] > 0
    html = open(out.report).read()
    assert 'id="samples"' in html and "ROUGE-L" in html
    version = client.get_model_version("bbc-headlines", out.registered_version)
    assert version.tags["task"] == "generation" and version.tags["strategy"] == out.candidate
    # The registered version, loaded through adaptflow's own loader, writes what the run's evaluation wrote.
    run = next(r for r in children if r.data.tags["strategy"] == out.candidate)
    logged = json.load(open(client.download_artifacts(run.info.run_id, "test_outputs.json")))["examples"]
    folder = fetch_version("bbc-headlines", out.registered_version, project / "fetched")
    again = predict(load_predictor(folder), [x["input"] for x in logged], batch_size=16)
    assert again.outputs == [x["output"] for x in logged]
    # The output policy counted in evaluation exactly what its checker blocks in the logged outputs.
    from tasks.config import PolicySettings
    from tasks.evaluation.policy import OutputPolicy

    policy = OutputPolicy(PolicySettings(**TINY["policy"]))
    for child in children:
        outputs = json.load(open(client.download_artifacts(child.info.run_id, "test_outputs.json")))["examples"]
        verdicts = [policy.check(x["output"]) for x in outputs]
        m = child.data.metrics
        assert m["policy_violation_rate"] == pytest.approx(sum(v.blocked for v in verdicts) / len(verdicts))
        assert m["policy_violations_max_length"] == pytest.approx(
            sum(len(x["output"]) > 12 for x in outputs) / len(outputs))
        assert "val_policy_violation_rate" in m and "policy_violations_personal_data_email" in m
    assert any(c.data.metrics["policy_violation_rate"] > 0 for c in children)   # the check had something to count
    assert 'id="policy"' in open(out.report).read()


def _jsonl(path, rows) -> str:
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    return str(path)


def _good(n: int = 60) -> list[dict]:
    return [{"report": f"patient {i} was seen on day {i % 7} and felt {'better' if i % 2 else 'worse'}.",
             "summary": f"day {i % 7}: {'better' if i % 2 else 'worse'} ({i})", "part": "train" if i < 40 else
             ("validation" if i < 50 else "test")} for i in range(n)]


def _set(rows, i, **kw):
    rows = [dict(r) for r in rows]
    rows[i].update(kw)
    return rows


BAD = {
    "missing_target": ([{k: v for k, v in r.items() if k != "summary"} for r in _good()],
                       ["column 'summary' failed expect_column_to_exist"]),
    "empty_target": (_set(_good(), 3, summary="  "),
                     ["column 'summary' failed expect_column_values_to_not_match_regex (1 row(s))", "row 3"]),
    "duplicate_pair": (_set(_good(), 5, report=_good()[4]["report"], summary=_good()[4]["summary"]),
                       ["(input, target) pair (normalised)' failed expect_column_values_to_be_unique"]),
    "input_in_two_splits": (_set(_good(), 45, report=_good()[2]["report"]),
                            ["validation: column 'text (normalised: also in another split)'"]),
    "target_too_long": (_set(_good(), 7, summary="word " * 400),
                        ["column 'target (tokens)' failed expect_column_values_to_be_between", "max_value=64"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_the_generation_contract_refuses_bad_data_and_registers_nothing(case, harness, project_factory, tiny_llama,
                                                                       tmp_path):
    rows, snippets = BAD[case]
    path = _jsonl(tmp_path / f"{case}.jsonl", rows)
    project = project_for(project_factory, tiny_llama, {"generation": {"max_target_tokens": 64}})
    state = specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="headlines",
                                       data=DataInput(path=path, text_col="report", target_col="summary",
                                                      split_col="part")), return_state=True)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert "nothing was trained or registered" in message
    for snippet in snippets:
        assert snippet in message, (case, snippet, message)
    use_store(project)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(f"adaptflow-{case.replace('_', '-')}")   # named after the --data file
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"   # only the parent: nothing trained
    assert client.search_registered_models() == []
