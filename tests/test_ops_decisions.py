"""Pure ops decisions and commands: should a scheduled retrain run; how strategies side by side
share the threads; the accelerate launch
command for multi-GPU strategy processes (built and checked on CPU); ops settings validation."""
from __future__ import annotations

import sys

import pytest

from conftest import ROOT
from tasks.config import OpsSettings, load_settings, parse_section
from tasks.ops.accelerate_launch import command
from tasks.ops.fanout import shared_threads
from tasks.ops.retrain import Inputs, decide
from tasks.tracking import code_version

NOW = Inputs(data="d" * 32, code="c" * 16, params="p" * 16, commit="abc1234")


def test_no_successful_run_yet_retrains():
    assert decide(NOW, None) == decide(NOW, None, None)
    assert decide(NOW, None).retrain and decide(NOW, None).reason == "no successful run yet"


def test_nothing_changed_skips_and_says_why():
    verdict = decide(NOW, Inputs(data=NOW.data, code=NOW.code, params=NOW.params, commit="abc1234"), "run42")
    assert not verdict.retrain
    assert verdict.reason.startswith("skipped: data dddddddd, code cccccccc (commit abc1234) and params pppppppp")
    assert verdict.reason.endswith("run42")


@pytest.mark.parametrize("field, label", [("data", "data"), ("code", "code"), ("params", "params")])
def test_any_change_retrains_and_names_it(field, label):
    last = Inputs(**{**NOW.__dict__, field: "0" * 32})
    verdict = decide(NOW, last)
    assert verdict.retrain and f"{label} 00000000 -> " in verdict.reason


def test_a_run_from_before_code_versions_counts_as_changed():
    verdict = decide(NOW, Inputs(data=NOW.data, code="", params=NOW.params))
    assert verdict.retrain and "code (unrecorded) -> cccccccc" in verdict.reason


def test_code_version_follows_python_and_dvc_yaml_not_generated_files(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "a.py").write_text("x = 1\n")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    before = code_version(tmp_path, tmp_path)
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")          # generated, committed with the data
    (tmp_path / "tasks" / "notes.txt").write_text("not code")
    assert code_version(tmp_path, tmp_path) == before
    (tmp_path / "tasks" / "a.py").write_text("x = 2\n")
    assert code_version(tmp_path, tmp_path) != before
    (tmp_path / "dvc.yaml").write_text("stages: {ingest: {cmd: x}}\n")
    assert code_version(tmp_path, tmp_path) != code_version(tmp_path / "tasks", tmp_path)


def test_code_version_of_a_project_of_its_own_is_the_running_packages(tmp_path):
    """A project folder holds no tasks/ or flows/: its code is the adaptflow that runs there."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert code_version(tmp_path) != code_version(tmp_path, tmp_path)   # not the hash of no code


def test_accelerate_launch_command_for_gpus():
    assert command(0, "tasks.ops.strategy_process", ["job", "out"], python="py") == \
        ["py", "-m", "tasks.ops.strategy_process", "job", "out"]
    assert command(1, "m", [], python="py") == ["py", "-m", "m"]   # one GPU: no launcher needed
    four = command(4, "tasks.ops.strategy_process", ["job", "out"], python=sys.executable)
    assert four[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert four[four.index("--num_processes") + 1] == "4" and "--multi_gpu" in four
    assert four[-4:] == ["--module", "tasks.ops.strategy_process", "job", "out"]
    # Each launch its own meeting port: two runs at once must not join each other's processes.
    two = command(2, "m", [], port=31234)
    assert two[two.index("--main_process_port") + 1] == "31234"


def test_accelerate_accepts_the_built_arguments():
    """accelerate's own parser reads the command we build (no GPU needed to parse it)."""
    from accelerate.commands.launch import launch_command_parser

    args = launch_command_parser().parse_args(command(2, "tasks.ops.strategy_process", ["job", "out"])[3:])
    assert args.multi_gpu and args.num_processes == 2 and args.module and args.main_process_port > 0
    assert args.training_script == "tasks.ops.strategy_process" and args.training_script_args == ["job", "out"]


def ops_settings(raw):
    return parse_section(OpsSettings, raw, "ops")


def test_ops_settings_are_validated_where_owned():
    assert ops_settings(None).retrain_cron == "0 3 * * 1"
    with pytest.raises(ValueError, match="ops.typo"):
        ops_settings({"typo": 1})
    with pytest.raises(ValueError, match="task_runner must be one of sequential, dask"):
        ops_settings({"task_runner": "spark"})
    with pytest.raises(ValueError, match="retrain_cron must have 5 fields"):
        ops_settings({"retrain_cron": "weekly"})


def test_strategies_side_by_side_on_a_local_cluster_share_the_threads():
    base = load_settings(str(ROOT / "params.yaml"))
    dask = load_settings(str(ROOT / "params.yaml"), overrides={"ops": {"task_runner": "dask", "dask_workers": 2}})
    assert shared_threads(base).train.threads == base.train.threads == 2   # one after another: all of them
    assert shared_threads(dask).train.threads == 1
    remote = load_settings(str(ROOT / "params.yaml"), overrides={"ops": {"task_runner": "dask",
                                                                          "dask_address": "tcp://10.0.0.5:8786"}})
    assert shared_threads(remote).train.threads == 2   # its workers are other machines
