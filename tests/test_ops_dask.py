"""Scale-out: with ops.task_runner: dask the strategies fan out over a Dask LocalCluster of two
worker processes and run at the same time (their MLflow child runs overlap in time)."""
from __future__ import annotations

import threading
import time

from mlflow.tracking import MlflowClient

from flows.specialize import SpecializeInput, specialize
from tasks.tracking import use_store

EXPERIMENT = "adaptflow-rotten-tomatoes"


def test_two_strategies_run_in_parallel_on_a_dask_local_cluster(harness, project_factory, tiny_bert):
    project = project_factory({"model": {"base": str(tiny_bert)}, "strategies": {"run": ["lora", "full_finetune"]},
                               "profiles": {"smoke": {"train": {"max_train_examples": 400, "batch_size": 8},
                                                      "ops": {"task_runner": "dask", "dask_workers": 2}}}})
    started = time.monotonic()
    out = specialize(SpecializeInput(params_file=str(project / "params.yaml"), profile="smoke"))
    elapsed = time.monotonic() - started
    assert not out.failed and set(out.models) == {"lora", "full_finetune"}

    use_store(project)
    client = MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = {r.data.tags["strategy"]: r.info for r in
            client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{out.parent_run_id}'")}
    assert set(runs) == {"lora", "full_finetune"} and all(i.status == "FINISHED" for i in runs.values())
    a, b = runs["lora"], runs["full_finetune"]
    overlap = min(a.end_time, b.end_time) - max(a.start_time, b.start_time)
    durations = {k: (i.end_time - i.start_time) / 1000 for k, i in runs.items()}
    print(f"\nDask LocalCluster, 2 workers: lora {durations['lora']:.0f} s and full_finetune "
          f"{durations['full_finetune']:.0f} s overlapped {overlap / 1000:.0f} s; flow {elapsed:.0f} s")
    assert overlap > 0, "the two strategies ran one after the other"
    # Side by side on the same cores, they share train.threads (2): one torch thread each.
    assert {client.get_run(r.run_id).data.params["train.threads"] for r in runs.values()} == {"1"}


def test_strategies_logging_one_split_at_the_same_moment_all_link_it(tmp_path):
    """MLflow looks a dataset up and inserts it outside one transaction: eight runs logging the
    same split at once collide on its unique key (19 of 40 calls failed without the retry)."""
    import pandas as pd

    import mlflow
    from tasks.tracking import log_dataset

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient()
    experiment = client.create_experiment("parallel-inputs")
    mlflow.set_experiment(experiment_id=experiment)   # not one an earlier test in this process left
    frame = pd.DataFrame({"text": ["a", "b"], "label": [0, 1]})
    run_ids = [client.create_run(experiment).info.run_id for _ in range(8)]
    failures: list[str] = []
    for round_ in range(3):   # a new digest each round: each round inserts the dataset anew
        dataset = mlflow.data.from_pandas(frame, source=str(tmp_path / "train.parquet"), name="train",
                                          targets="label", digest=f"split{round_}")
        start = threading.Barrier(len(run_ids))

        def link(run_id: str) -> None:
            start.wait()
            try:
                with mlflow.start_run(run_id=run_id, nested=True):
                    log_dataset(dataset, context="training")
            except Exception as e:   # reported below, with every other thread's
                failures.append(str(e)[:160])

        threads = [threading.Thread(target=link, args=(r,)) for r in run_ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not failures, failures
    for run_id in run_ids:
        digests = sorted(d.dataset.digest for d in client.get_run(run_id).inputs.dataset_inputs)
        assert digests == ["split0", "split1", "split2"]
