"""`adaptflow cost RUN_ID`: the report's cost table and break-even points for a finished run, read
from a real MLflow store, for the params' cost: settings with a profile and --set overrides."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import fresh_store

from flows.cli import main
from tasks.config import CostSettings
from tasks.evaluation.ownership import Measured, own
from tasks.tracking import configure

ROOT = Path(__file__).resolve().parents[1]
FIGURES = {   # what a run logs for the cost model (MiniLM-sized, made up but consistent)
    "lora": {"model_params": 22.7e6, "tenant_shares_base": 1.0, "tenant_mixes": 1.0, "artifact_bytes": 0.3e6,
             "latency_ms_p50": 10.0, "latency_ms_p95": 15.0, "throughput_examples_per_s": 160.0,
             "train_seconds": 3600.0, "switch_ms": 2.0, "switch_ms_per_version": 0.5, "mixed_ms_per_version": 1.0,
             "test_accuracy": 0.81},
    "full_finetune": {"model_params": 22.7e6, "tenant_shares_base": 0.0, "tenant_mixes": 0.0,
                      "artifact_bytes": 91e6, "latency_ms_p50": 8.0, "latency_ms_p95": 12.0,
                      "throughput_examples_per_s": 200.0, "train_seconds": 7200.0, "test_accuracy": 0.82},
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A project folder (the repository's params.yaml) whose MLflow store holds one parent run with
    a finished lora and full_finetune run and a failed ia3 run (built once: a new store takes seconds)."""
    # mlflow.set_tracking_uri writes MLFLOW_TRACKING_URI, which use_store prefers: the project's
    # own store while these tests run, then whatever was there before.
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    tmp_path = tmp_path_factory.mktemp("cost-command")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    fresh_store(tmp_path)
    experiment = configure(tmp_path, "cost-test")
    client = MlflowClient()
    parent = client.create_run(experiment, run_name="specialize-test", tags={"task": "classification"}).info.run_id
    for name, metrics in FIGURES.items():
        run = client.create_run(experiment, run_name=name, tags={"mlflow.parentRunId": parent, "strategy": name})
        for key, value in metrics.items():
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id, "FINISHED")
    failed = client.create_run(experiment, run_name="ia3", tags={"mlflow.parentRunId": parent, "strategy": "ia3"})
    client.set_terminated(failed.info.run_id, "FAILED")
    client.set_terminated(parent, "FINISHED")
    yield tmp_path / "params.yaml", parent
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


def cost_of(name: str, **settings) -> object:
    return own(Measured.from_metrics(name, FIGURES[name]), CostSettings(**settings))


def test_prints_each_strategy_with_its_costs_break_even_and_settings(finished_run, capsys):
    params, parent = finished_run
    assert main(["cost", parent, "--params", str(params), "--set", "cost.tenants=32",
                 "--set", "cost.requests_per_day=2e6"]) == 0
    out = capsys.readouterr().out
    table = out.split("\n\n")[1].splitlines()   # after the title, before the break-even points
    lines = {line.split()[0]: line for line in table if line.split()[:1] in (["lora"], ["full_finetune"])}
    for name in FIGURES:
        o = cost_of(name, tenants=32, requests_per_day=2e6)
        assert f"{o.monthly:,.2f}" in lines[name] and f"{o.total:,.2f}" in lines[name]
        assert f"{o.one_time:,.2f}" in lines[name] and f" {o.instances} " in lines[name]
        assert f"{o.memory_mb:,.0f}" in lines[name] and lines[name].endswith("yes")
    assert "0.810" in lines["lora"]                                     # quality beside the cost
    assert "left out: ia3 (run failed)" in out
    assert "Along traffic (32 tenant(s)):" in out and "Along tenants (2,000,000 requests a day):" in out
    assert "  tenants: 32" in out and "  requests_per_day: 2000000.0" in out   # the settings used


def test_a_profile_applies_and_a_deployment_it_cannot_meet_says_why(finished_run, capsys):
    params, parent = finished_run
    raw = yaml.safe_load(params.read_text())
    raw["profiles"]["pricey"] = {"cost": {"serve_price_per_hour": 1.0, "latency_p95_ms": 13}}
    priced = params.with_name("priced.yaml")
    priced.write_text(yaml.safe_dump(raw))
    assert main(["cost", parent, "--params", str(priced), "--profile", "pricey"]) == 0
    out = capsys.readouterr().out
    # lora's batch-1 p95 is 15 ms: over 13 ms at any price; full_finetune's 12 ms meets it
    assert "no: p95 at batch 1 is 15 ms on 2 cores, over the 13 ms objective" in out
    full = cost_of("full_finetune", serve_price_per_hour=1.0, latency_p95_ms=13)
    assert f"{full.monthly:,.2f}" in out and "  serve_price_per_hour: 1.0" in out
    assert "full_finetune is cheapest over the whole range" in out


def test_wrong_settings_and_runs_without_figures_are_refused_with_what_to_fix(finished_run, capsys):
    params, parent = finished_run
    assert main(["cost", parent, "--params", str(params), "--set", "cost.price=1"]) == 2
    assert "cost.price" in capsys.readouterr().err
    assert main(["cost", parent, "--params", str(params), "--set", "tenants=3"]) == 2
    assert "expected cost.KEY=VALUE" in capsys.readouterr().err
    assert main(["cost", parent, "--params", str(params), "--set", "cost.tenants=many"]) == 2
    assert "cost settings are numbers" in capsys.readouterr().err
    assert main(["cost", parent, "--params", str(params), "--set", "tenants=3"]) == 2
    assert "expected cost.KEY=VALUE" in capsys.readouterr().err
    assert main(["cost", parent, "--params", str(params), "--profile", "nope"]) == 2
    assert "no profile 'nope'" in capsys.readouterr().err
    client = MlflowClient()
    bare = client.create_run(client.get_run(parent).info.experiment_id, run_name="old").info.run_id
    assert main(["cost", bare, "--params", str(params)]) == 2
    assert "logged no figures the cost model reads" in capsys.readouterr().err
    assert main(["cost", "0" * 32, "--params", str(params)]) == 2
