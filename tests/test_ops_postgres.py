"""Production profile: the Prefect server and the MLflow backend store on PostgreSQL (a cluster
this test starts with initdb/pg_ctl and stops), artifacts served by the MLflow server; the real
`adaptflow run --profile smoke` end to end against both."""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import env_for_subprocess
from mlflow.tracking import MlflowClient

from postgres_cluster import pg_bin, start_postgres
from tasks.ops.servers import ServerError, free_port, start_mlflow, start_prefect

ADAPTFLOW = str(Path(sys.executable).parent / "adaptflow")
EXPERIMENT = "adaptflow-rotten-tomatoes"
MODEL = "rotten-tomatoes-sentiment"


@pytest.fixture(scope="module")
def postgres():
    try:
        pg_bin("initdb")
    except ServerError as exc:
        pytest.skip(f"{exc} (make test installs it when run as root)")
    folder = Path(tempfile.mkdtemp(prefix="adaptflow-pg-"))   # in /tmp: reachable by the postgres OS user
    started = time.monotonic()
    pg = start_postgres(folder, free_port())
    try:
        for name in ("prefect", "mlflow"):
            pg.create_database(name)
        print(f"\nPostgreSQL {pg.sql('SHOW server_version')} up in {time.monotonic() - started:.0f} s")
        yield pg
    finally:
        pg.stop()
        subprocess.run(["rm", "-rf", str(folder)])


@pytest.fixture(scope="module")
def servers(postgres, tmp_path_factory):
    root = tmp_path_factory.mktemp("pg-servers")
    prefect = start_prefect(free_port(), root / "prefect", database_url=postgres.url("prefect", "postgresql+asyncpg"))
    mlflow = start_mlflow(free_port(), postgres.url("mlflow"), root / "artifacts", root / "mlflow.log")
    try:
        started = time.monotonic()
        prefect.wait_healthy()
        mlflow.wait_healthy()
        print(f"Prefect and MLflow on PostgreSQL healthy after {time.monotonic() - started:.0f} s")
        yield prefect, mlflow, root
    finally:
        mlflow.stop()
        prefect.stop()


def test_specialize_smoke_end_to_end_on_postgres(servers, postgres, project_factory, tiny_bert):
    prefect, mlflow, root = servers
    project = project_factory({"model": {"base": str(tiny_bert)}})
    env = env_for_subprocess(PREFECT_API_URL=prefect.url, MLFLOW_TRACKING_URI=mlflow.url)
    started = time.monotonic()
    done = subprocess.run([ADAPTFLOW, "run", "--params", str(project / "params.yaml"), "--profile", "smoke"],
                          env=env, cwd=project, capture_output=True, text=True, timeout=1800)
    took = time.monotonic() - started
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])

    client = MlflowClient(mlflow.url)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.status for r in parent] == ["FINISHED"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    assert sorted(r.data.tags["strategy"] for r in children) == ["full_finetune", "lora", "zero_shot"]
    version = client.get_model_version_by_alias(MODEL, "challenger")
    assert version.tags["parent_run_id"] == parent[0].info.run_id
    assert exp.artifact_location.startswith("mlflow-artifacts:"), "artifacts are served by the MLflow server"
    assert any((root / "artifacts").rglob("MLmodel")), "the registered model's files are in the server's store"

    # Both servers really used PostgreSQL.
    assert int(postgres.sql("SELECT count(*) FROM runs", "mlflow")) == len(runs)
    assert int(postgres.sql("SELECT count(*) FROM model_versions", "mlflow")) >= 1
    flow_runs = postgres.sql("SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id", "prefect")
    assert "specialize|COMPLETED" in flow_runs.splitlines(), flow_runs
    print(f"adaptflow run --profile smoke on PostgreSQL: {took:.0f} s, {len(children)} strategies, "
          f"registered v{version.version}")


def test_two_tuning_workers_share_one_study_on_postgres(postgres, project_factory, tiny_bert, tmp_path):
    """Two processes tune the same strategy on the same data against one PostgreSQL study: both
    run trials, the budget (6) is shared between them, and both end with the study's best."""
    import json

    import optuna

    postgres.create_database("optuna")
    url = postgres.url("optuna", "postgresql+psycopg2")
    optuna.storages.RDBStorage(url)   # the schema first: two processes creating it at once is Optuna's own race
    project = project_factory({"model": {"base": str(tiny_bert)}})
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    worker = str(Path(__file__).parent / "tune_worker.py")
    procs = [subprocess.Popen([sys.executable, worker, str(project), url, str(barrier), "2", str(tmp_path / f"w{i}")],
                              cwd=project, env=env_for_subprocess(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert outs[0]["study"] == outs[1]["study"]
    study = optuna.load_study(study_name=outs[0]["study"], storage=url)
    finished = [t for t in study.trials if t.state.is_finished()]
    workers = {t.user_attrs.get("worker") for t in finished}
    assert len(workers) == 2, workers                       # trials from both processes
    assert all(o["mine"] for o in outs)
    assert sorted(outs[0]["mine"] + outs[1]["mine"]) == sorted(t.number for t in study.trials)
    # The budget counts the whole study: a trial already running when the sixth ends may finish too.
    assert 6 <= len(finished) <= 7, len(finished)
    # Each chose the best trial it saw finished; the last to stop saw them all.
    best = {k: study.best_trial.params[k] for k in outs[0]["chosen"]}
    assert best in (outs[0]["chosen"], outs[1]["chosen"])
    numbers = [t.number for t in study.trials if t.state.name == "COMPLETE"]
    assert all(any(o["chosen"] == {k: study.trials[n].params[k] for k in o["chosen"]} for n in numbers) for o in outs)
