"""A user's own CSV (custom column names) through `adaptflow run --data ...` end to end, then:
drift against the previous version of the same file, and `dvc pull` in a fresh clone giving
back the exact splits of the first registered version. Real CLI (in process), Prefect harness,
DVC with a local remote, Great Expectations, MLflow; tiny BERT, smoke profile."""
from __future__ import annotations

import hashlib
import json
import subprocess

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from test_data_contract import reviews

import mlflow
from flows.cli import main
from tasks.data.dvc import dvc
from tasks.tracking import use_store

MODEL = "my-reviews"



def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def git(cwd, *args):
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_users_csv_end_to_end_drift_and_fresh_clone_pull(harness, project_factory, tiny_bert, tmp_path, capsys):
    project = project_factory({"model": {"base": str(tiny_bert)}, "strategies": {"run": ["lora"]}})
    folder = tmp_path / "my data"
    folder.mkdir()
    source = folder / "reviews.csv"
    reviews(600).assign(stars=3).to_csv(source, index=False)   # an extra column is ignored
    run = ["run", "--params", str(project / "params.yaml"), "--profile", "smoke", "--data", str(source),
           "--text-col", "review", "--label-col", "sentiment", "--group-col", "author", "--model-name", MODEL]
    assert main(run) == 0, capsys.readouterr().err[-3000:]
    assert f"registered {MODEL} v1" in capsys.readouterr().out

    use_store(project)
    client = MlflowClient()
    v1 = client.get_model_version(MODEL, "1")
    t = v1.tags
    assert t["validation"] == "passed" and t["data.source"] == str(source) and t["data.raw_path"] == "data/raw/reviews.csv"
    parent = client.get_run(t["parent_run_id"])
    assert parent.data.tags["validation.labels_inferred"] == "true"
    summary = json.loads(open(client.download_artifacts(parent.info.run_id, "validation/summary.json")).read())
    assert summary["labels"] == ["bad", "good"] and summary["drift_compared_with"] is None
    for gate in ("raw", "splits"):   # GE Data Docs of both gates, in MLflow
        assert f"validation/{gate}/data_docs/index.html" in [
            a.path for a in client.list_artifacts(parent.info.run_id, f"validation/{gate}/data_docs")]
    splits = {s: pd.read_parquet(project / "data" / "processed" / f"{s}.parquet") for s in ("train", "validation", "test")}
    authors = [set(f["author"]) for f in splits.values()]
    assert not (authors[0] & authors[1] or authors[0] & authors[2] or authors[1] & authors[2])
    assert sum(len(f) for f in splits.values()) == 600
    predicted = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(pd.DataFrame({"text": ["a warm film"]}))
    assert set(predicted["label"]) <= {"bad", "good"}
    assert main(["lineage", f"{MODEL}/1", "--params", str(project / "params.yaml")]) == 0
    lineage = capsys.readouterr().out
    assert "data/raw/reviews.csv" in lineage and str(source) in lineage and t["data.train_md5"] in lineage
    assert "result         passed" in lineage

    # What a user commits after a run: code, params, dvc.yaml, data-params.yaml, dvc.lock.
    (project / ".gitignore").write_text("mlflow/\n.prefect/\nreports/\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "v1 data")

    # The same file, changed: an eighth of the rows flip to good (label shares 50/50 -> 62.5/37.5).
    changed = reviews(600).assign(stars=3)
    changed.loc[changed.index % 8 == 1, "sentiment"] = "good"
    changed.to_csv(source, index=False)
    assert main(run) == 0, capsys.readouterr().err[-3000:]
    capsys.readouterr()
    v2 = client.get_model_version(MODEL, "2")
    assert v2.tags["data.version"] != t["data.version"]
    summary = json.loads(open(client.download_artifacts(v2.tags["parent_run_id"], "validation/summary.json")).read())
    assert summary["drift_compared_with"] == t["data.version"]
    assert [w["measure"] for w in summary["drift_warnings"]] == ["label_tvd"]
    assert summary["drift_warnings"][0]["value"] == pytest.approx(0.125)

    # A fresh clone of the v1 commit pulls v1's exact files from the remote.
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    remote = json.loads(json.dumps(t["data.remote"]))
    dvc(clone, "remote", "add", "--local", "--default", "adaptflow", remote)
    dvc(clone, "pull")
    for split in ("train", "validation", "test"):
        pulled = clone / "data" / "processed" / f"{split}.parquet"
        assert md5(pulled) == t[f"data.{split}_md5"], split
        assert pd.read_parquet(pulled).equals(splits[split])
    assert md5(clone / "data" / "raw" / "reviews.csv") == t["data.raw_md5"]
