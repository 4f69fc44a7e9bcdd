"""The specialize flow under prefect_test_harness, on a tiny random BERT, with the real DVC,
Great Expectations and MLflow (a store inside a throwaway project)."""
from __future__ import annotations

import pytest
from conftest import ROOT, mlflow_uri
from mlflow.tracking import MlflowClient

import mlflow
from flows.specialize import SpecializeInput, specialize
from tasks.data.dvc import dvc
from tasks.tasktypes.metrics import recorded
from tasks.strategies import registry
from tasks.tracking import use_store

METRICS = recorded("classification")   # what every classification run records (the catalogue)

MODEL = "rotten-tomatoes-sentiment"
EXPERIMENT = "adaptflow-rotten-tomatoes"



def client_for(project) -> MlflowClient:
    use_store(project)
    return MlflowClient()


def runs_of(client: MlflowClient):
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([exp.experiment_id]) if exp else []


def test_two_runs_register_compare_and_reuse_the_data_version(harness, project_factory, tiny_bert):
    project = project_factory({"model": {"base": str(tiny_bert)}})
    form = SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke")
    first = specialize(form)

    client = client_for(project)
    runs = runs_of(client)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == first.parent_run_id]
    assert sorted(r.data.tags["strategy"] for r in children) == sorted(
        ["full_finetune", "lora", "zero_shot"])
    for run in children:
        assert set(METRICS) <= set(run.data.metrics), run.data.tags["strategy"]
        assert "forgetting_delta" in run.data.metrics, run.data.tags["strategy"]
        assert run.data.tags["data.test_md5"] and run.data.tags["git.commit"]
        assert run.inputs.dataset_inputs, "the train split is logged as an MLflow dataset"
    by_name = {r.data.tags["strategy"]: r for r in children}
    assert by_name["zero_shot"].data.metrics["forgetting_delta"] == 0.0   # no weight changed
    lora = by_name["lora"].data.metrics
    assert lora["merged_max_abs_logit_diff"] < 1e-4 and lora["merged_latency_ms_p50"] > 0
    # what owning each costs (params cost:): LoRA versions share a base and one forward pass
    full = by_name["full_finetune"].data.metrics
    assert (lora["tenant_shares_base"], lora["tenant_mixes"], full["tenant_shares_base"]) == (1.0, 1.0, 0.0)
    for run in children:   # instances 0: cannot meet cost.latency_p95_ms (a loaded machine), monthly_cost then huge
        assert run.data.metrics["monthly_cost"] > 0 and "serving_instances" in run.data.metrics
    curve = client.get_metric_history(by_name["lora"].info.run_id, "learning_curve_accuracy")
    assert sorted(m.step for m in curve) == [16, 48]   # smoke: 16 examples, then the run's own 48
    parent = client.get_run(first.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["data.version"] == first.data_version

    version = client.get_model_version_by_alias(MODEL, "challenger")
    assert str(version.version) == first.registered_version and first.challenger_set
    assert version.tags["base.fingerprint"] and version.tags["validation"] == "passed"
    if version.tags["saves"] == "adapter":
        assert float(version.tags["metric.artifact_bytes"]) < 0.5 * (tiny_bert / "model.safetensors").stat().st_size

    from tasks.data.lineage import format_lineage, lineage

    page = open(first.report).read()
    # 2 Pareto, loss, reliability, learning curve, monthly cost against traffic
    assert 'id="recommendation"' in page and page.count("data:image/png;base64,") == 6 and 'id="break-even"' in page
    assert f"{first.parent_run_id}.html" in [a.path for a in client.list_artifacts(first.parent_run_id)]

    text = format_lineage(lineage(client, f"{MODEL}@challenger"))
    for expected in (f"{MODEL} v{first.registered_version}", first.parent_run_id, version.tags["data.test_md5"],
                     version.tags["data.raw_md5"], "result         passed", "data/raw/rotten_tomatoes"):
        assert expected in text, (expected, text)

    second = specialize(form)
    assert second.data_version == first.data_version
    assert "up to date" in dvc(project, "status")
    # the same data under the same contract: both gates' evidence copied from the first run, not computed
    again = client.get_run(second.parent_run_id).data.tags
    for gate in ("raw", "splits"):
        assert again[f"validation.{gate}.reused_from"] == first.parent_run_id
        assert again[f"validation.{gate}.key"] == parent.data.tags[f"validation.{gate}.key"]
        copied = {a.path for a in client.list_artifacts(second.parent_run_id, f"validation/{gate}")}
        assert {f"validation/{gate}/summary.json", f"validation/{gate}/great_expectations_results.json",
                f"validation/{gate}/data_docs"} <= copied, copied
    assert again["validation"] == "passed"
    first_score = float(version.tags["metric.test_macro_f1"])
    second_version = client.get_model_version(MODEL, second.registered_version)
    second_score = float(second_version.tags["metric.test_macro_f1"])
    assert second.challenger_set == (second_score > first_score)
    expected = second.registered_version if second.challenger_set else first.registered_version
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == expected
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 2   # versions are never replaced
    base_name = version.tags["base.registered"].split("/")[0]
    assert len(client.search_model_versions(f"name='{base_name}'")) == 1   # the base, registered once
    assert version.tags["adapter.library"] in {"peft", "adapters", "transformers", "none"}
    assert version.tags["adapter.type"] == version.tags["strategy"]


# prepare, then blank one training text: the data a broken upstream export would produce.
BREAK_TRAIN = (
    "python -m tasks.data.stages prepare && python -c \"import pandas as pd; "
    "p='data/processed/train.parquet'; d=pd.read_parquet(p); d.loc[3, 'text']=''; "
    "d.to_parquet(p, index=False)\""
)


def test_an_empty_text_stops_the_flow_before_training(harness, project_factory, tiny_bert):
    dvc_yaml = (ROOT / "dvc.yaml").read_text().replace("cmd: python -m tasks.data.stages prepare",
                                                         f"cmd: {BREAK_TRAIN}")
    project = project_factory({"model": {"base": str(tiny_bert)}}, dvc_yaml=dvc_yaml)
    state = specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke"),
                       return_state=True)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert "data validation failed" in message
    assert "train: column 'text' failed expect_column_values_to_not_match_regex (1 row(s))" in message
    assert "row 3: text=''" in message and "train.parquet" in message

    client = client_for(project)
    runs = runs_of(client)
    assert len(runs) == 1 and runs[0].info.status == "FAILED", "only the failed parent run, no strategy ran"
    tags = runs[0].data.tags   # a gate's key marks a pass only: the failed split gate runs again next time
    assert "validation.raw.key" in tags and "validation.splits.key" not in tags
    assert "validation/summary.json" in [a.path for a in client.list_artifacts(runs[0].info.run_id, "validation")]
    assert client.search_registered_models() == []


def test_every_strategy_version_loads_back_through_the_registry(harness, project_factory, tiny_bert, tiny_llama):
    """All strategies on tiny models (few_shot and retrieval_few_shot prompt the tiny Llama); each
    artifact that is not a whole model (a retrieval version: its prompt and index) is registered
    and loaded back with models:/NAME/VERSION, and predicts."""
    import pandas as pd

    project = project_factory({"model": {"base": str(tiny_bert)},
                               "strategies": {"few_shot": {"base": str(tiny_llama)},
                                              # the tiny BERT embeds: MiniLM over the 9,907 train
                                              # reviews took 27 s (test_retrieval*.py embed with it)
                                              "retrieval_few_shot": {"base": str(tiny_llama), "k": 2,
                                                                     "embedder": str(tiny_bert)},
                                              "partial_finetune": {"frozen_layers": 1}}})
    out = specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke",
                                     strategies=["all"]))
    client = client_for(project)
    children = {r.data.tags["strategy"]: r for r in runs_of(client)
                if r.data.tags.get("mlflow.parentRunId") == out.parent_run_id}
    assert set(children) == set(out.models) and len(children) == len(registry.names("classification")) == 12
    for strategy in ("zero_shot", "few_shot"):
        assert "prompt_variant_std" in children[strategy].data.metrics
        assert children[strategy].data.metrics["chosen_variant"] >= 0
    texts = pd.DataFrame({"text": ["a joy from start to finish", "a chore to sit through"]})
    for strategy, uri in out.models.items():
        if children[strategy].data.tags["saves"] == "full_model":
            continue
        version = mlflow.register_model(uri, f"check-{strategy.replace('_', '-')}")
        predicted = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}").predict(texts)
        assert len(predicted) == 2 and set(predicted["label"]) <= {"negative", "positive"}, strategy


def test_champion_is_rescored_when_the_data_changed(harness, project_factory, tiny_bert):
    import yaml

    from tasks.registry.governance import promote

    project = project_factory({"model": {"base": str(tiny_bert)}, "strategies": {"run": ["lora", "zero_shot"]}})
    form = SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke")
    first = specialize(form)
    client = client_for(project)
    promote(client, mlflow_uri(project), MODEL, "ana", "first release", version=first.registered_version)

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["split_seed"] = 99          # another grouped split: new validation and test data
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = specialize(form)
    assert second.data_version != first.data_version
    reasons = client.get_model_version(MODEL, second.registered_version).tags["challenger_reasons"]
    assert f"@champion v{first.registered_version} re-scored on this run's validation examples" in reasons
    assert f"@champion (v{first.registered_version}) was scored on" not in reasons   # not left out


def test_an_adapter_is_refused_on_a_base_that_changed(harness, project_factory, tiny_bert, tmp_path):
    """Registered on one tiny base; the folder at that path then holds other weights: loading
    through the registry is a clear error naming both fingerprints, not a silent wrong model."""
    import shutil

    from tasks.models.base import BaseModelError

    base = tmp_path / "swappable-base"
    shutil.copytree(tiny_bert, base)
    project = project_factory({"model": {"base": str(base)}, "strategies": {"run": ["lora"]}})
    specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke"))
    client_for(project)
    import torch
    from transformers import BertConfig, BertModel
    torch.manual_seed(7)
    BertModel(BertConfig.from_pretrained(base)).save_pretrained(base)   # same shapes, other weights
    with pytest.raises(BaseModelError, match=r"was trained on a base with fingerprint .* but .* has fingerprint"):
        mlflow.pyfunc.load_model(f"models:/{MODEL}@challenger")


def test_scores_on_other_test_examples_are_rescored_not_compared(harness, project_factory, tiny_bert):
    """Same data version, but the second run scores 32 test examples instead of 64: the
    @challenger from the first run is re-scored on those 32 before any comparison."""
    import yaml

    project = project_factory({"model": {"base": str(tiny_bert)}, "strategies": {"run": ["zero_shot"]}})
    form = SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke")
    first = specialize(form)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["profiles"]["smoke"]["train"]["max_eval_examples"] = 32
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = specialize(form)
    assert second.data_version == first.data_version
    client = client_for(project)
    tags = client.get_model_version(MODEL, second.registered_version).tags
    assert tags["eval.selection_key"].endswith("/32") and tags["eval.selection_split"] == "validation"
    assert f"@challenger v{first.registered_version} re-scored on this run's validation examples" in tags["challenger_reasons"]
    assert "(32 examples)" in tags["challenger_reasons"]


def test_lora_with_and_without_retrieval_run_side_by_side_and_the_retrieving_version_loads(
        harness, project_factory, tiny_bert):
    """`strategies.lora.retrieval` + `--strategies lora,lora+retrieval`: the index is built as a
    flow step, both run, the report's retrieval ablation pairs them with a paired test, and the
    retrieving version (adapter + index) loads back through the registry and predicts."""
    import pandas as pd

    project = project_factory({"model": {"base": str(tiny_bert)},
                               "strategies": {"lora": {"retrieval": {"k": 2, "context_tokens": 32,
                                                                     "embedder": str(tiny_bert)}}}})
    out = specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke",
                                     strategies=["lora", "lora+retrieval"]))
    client = client_for(project)
    children = {r.data.tags["strategy"]: r for r in runs_of(client)
                if r.data.tags.get("mlflow.parentRunId") == out.parent_run_id}
    assert set(children) == {"lora", "lora+retrieval"} and not out.failed
    with_r, without = children["lora+retrieval"].data.metrics, children["lora"].data.metrics
    assert with_r["index_rows"] > 0 and with_r["retrieval_ms_p50"] > 0 and "index_rows" not in without
    assert client.get_run(out.parent_run_id).data.metrics["retrieval_index_rows"] == with_r["index_rows"]
    page = open(out.report).read()
    assert "Retrieval ablation" in page and "lora → lora+retrieval" in page and "exact McNemar" in page
    version = mlflow.register_model(out.models["lora+retrieval"], "check-lora-retrieval")
    predicted = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}").predict(
        pd.DataFrame({"text": ["a joy from start to finish", "a chore to sit through"]}))
    assert len(predicted) == 2 and set(predicted["label"]) <= {"negative", "positive"}
