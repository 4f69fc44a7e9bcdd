"""MLflow setup and the run hierarchy (one parent run per flow run, one child per strategy), and
the tags that say what ran: code, params, base and data. Used by every stage that logs;
strategies and models never import it."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from mlflow.tracking import MlflowClient

import mlflow

if TYPE_CHECKING:
    from mlflow.data.dataset import Dataset
    from tasks.config import Settings
    from tasks.data.dvc import DataVersion
    from tasks.models.base import ResolvedBase

# The code that decides what is trained: *.py under these folders, and dvc.yaml.
CODE_PATHS = ("tasks", "flows", "dvc.yaml")


# Per-label metrics put the label into the metric name (tasks/evaluation/quality.py).
PRECISION_PREFIX, RECALL_PREFIX = "test_precision_", "test_recall_"
# A registered version carries each of its run's metrics as the tag `metric.<name>`
# (tasks/registry/versions.py): the longest key a label ends up in is `metric.test_precision_<label>`.
VERSION_METRIC_TAG = "metric."


def metric_name_problem(name: str) -> str | None:
    """Why MLflow would refuse `name` as a metric name or tag key (None: it accepts it), by
    MLflow's own rules: letters, digits, `_ - . / :` and spaces, no path-like `//` or `..`
    segments, at most MAX_ENTITY_KEY_LENGTH (250) characters."""
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, path_not_unique, validate_param_and_metric_name

    if not validate_param_and_metric_name(name):
        return "has a character MLflow does not allow in a metric name"
    if path_not_unique(name):
        return "reads as a file path MLflow would normalise (`//`, `/./`, `/../` or a trailing `/`)"
    if len(name) > MAX_ENTITY_KEY_LENGTH:
        return f"makes a metric name over MLflow's {MAX_ENTITY_KEY_LENGTH} characters"
    return None


def label_keys(label: str) -> list[str]:
    """Every key adaptflow writes with `label` in it: the run's per-label metric names, then the
    registered version's tags for them."""
    names = [f"{PRECISION_PREFIX}{label}", f"{RECALL_PREFIX}{label}"]
    return names + [f"{VERSION_METRIC_TAG}{n}" for n in names]


def longest_label(limit: int | None = None) -> int:
    """The longest label name whose every key fits MLflow's key limits (228 with MLflow 3.17's 250)."""
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_MODEL_REGISTRY_TAG_KEY_LENGTH

    limit = limit or min(MAX_ENTITY_KEY_LENGTH, MAX_MODEL_REGISTRY_TAG_KEY_LENGTH)
    return limit - max(len(k) for k in label_keys(""))


def unloggable_labels(labels: list[str]) -> dict[str, str]:
    """Labels that cannot be part of a metric name or a registry tag key (label -> why): every
    strategy would train and then fail to log `test_precision_<label>`, or the registration would
    fail on the tag `metric.test_precision_<label>`, so they are refused before anything trains."""
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_MODEL_REGISTRY_TAG_KEY_LENGTH

    limit = min(MAX_ENTITY_KEY_LENGTH, MAX_MODEL_REGISTRY_TAG_KEY_LENGTH)
    out = {}
    for label in labels:
        why = next(filter(None, (metric_name_problem(k) for k in label_keys(label)[:2])), None)
        longest = max(label_keys(label), key=len)
        if why is None and len(longest) > limit:
            why = (f"is {len(label)} characters: the registered version's tag `{VERSION_METRIC_TAG}{PRECISION_PREFIX}"
                   f"<label>` would be {len(longest)}, over MLflow's {limit}-character key limit; at most "
                   f"{longest_label(limit)} characters")
        elif why is not None:
            why = f"({len(label)} characters) {why}"
        if why:
            out[label] = why
    return out


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI when set; otherwise the local store under mlflow/ (sqlite)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow' / 'mlflow.db').resolve()}"


def use_store(root: Path) -> str:
    """Point MLflow tracking and registry at the project's store; returns its URI."""
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri.startswith("sqlite:///"):
        (root / "mlflow").mkdir(exist_ok=True)
    return uri


def configure(root: Path, experiment: str) -> str:
    """Point MLflow at the store and return the experiment id (created on first use)."""
    uri = use_store(root)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    # The local store keeps artifacts next to its database; a server decides for itself.
    location = (root / "mlflow" / "artifacts").resolve().as_uri() if uri.startswith("sqlite:") else None
    return mlflow.create_experiment(experiment, artifact_location=location)


@contextmanager
def parent_run(experiment_id: str, run_name: str, tags: dict[str, str]) -> Iterator[str]:
    """A parent run that ends FAILED (not lost, not left RUNNING) when the body raises."""
    client = MlflowClient()
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    try:
        yield run.info.run_id
    except BaseException:
        client.set_terminated(run.info.run_id, status="FAILED")
        raise
    client.set_terminated(run.info.run_id, status="FINISHED")


def log_json(run_id: str, obj: object, artifact_file: str) -> None:
    MlflowClient().log_text(run_id, json.dumps(obj, indent=2, default=str), artifact_file)


def tag_run(run_id: str, tags: dict[str, str]) -> None:
    """The tags in one write (MLflow's log_batch takes up to 100): a set_tag each was a SQLite
    transaction each, 25 tags 56-125 ms against 5-12 ms (AMX Xeon)."""
    from mlflow.entities import RunTag

    batch = [RunTag(key, str(value)) for key, value in tags.items()]
    client = MlflowClient()
    for start in range(0, len(batch), 100):
        client.log_batch(run_id, tags=batch[start:start + 100])


def log_dataset(dataset: Dataset, context: str) -> None:
    """Link `dataset` to the active run, once more if another run inserted the same dataset
    between MLflow's look-up and its insert. MLflow looks a dataset up by (experiment, name,
    digest) and inserts it when missing, outside one transaction, so strategies running in
    parallel (ops.task_runner: dask) that log one split can both insert, and one fails on the
    unique key (8 threads at once on SQLite, 5 rounds: 19 of 40 calls failed). The second call
    finds it."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow.log_input(dataset, context=context)
    except MlflowException as e:
        # SQLite says "UNIQUE constraint failed", PostgreSQL "violates unique constraint".
        if "unique constraint" not in str(e).lower():
            raise
        mlflow.log_input(dataset, context=context)


def git_state(root: Path) -> tuple[str, bool]:
    """(commit, dirty). Outside a git checkout: ("unknown", True)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                                    text=True, check=True).stdout.strip())
        return commit, dirty
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown", True


# The folder holding the tasks/ and flows/ packages that run: the clone (editable install) or
# site-packages (an installed adaptflow in a project of the user's own).
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def code_version(root: Path, code_root: Path = PACKAGE_ROOT) -> str:
    """sha256 over the code that decides what is trained: *.py of the tasks/ and flows/ packages
    that run (under `code_root`), and the project's dvc.yaml (under `root`)."""
    digest = hashlib.sha256()
    for name in CODE_PATHS:
        path = (root if name == "dvc.yaml" else code_root) / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
        for f in files:
            if "__pycache__" in f.parts:
                continue
            digest.update(f.relative_to(path.parent).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def run_tags(settings: Settings, base: ResolvedBase) -> dict[str, str]:
    """What is known before the data is read: code, params, base, and which dataset. Computed
    once per run, before the DVC stages rewrite tracked files (data-params.yaml, dvc.lock)."""
    commit, dirty = git_state(settings.root)
    return {"data.source": settings.data.source, "data.raw_path": settings.data.raw_path,
            "git.commit": commit, "git.dirty": str(dirty).lower(), "code.version": code_version(settings.root),
            "params.hash": settings.params_hash(), "profile": settings.profile or "default",
            "base.name": base.name, "base.fingerprint": base.fingerprint, "task": settings.task}


def lineage_tags(tags: dict[str, str], data: DataVersion) -> dict[str, str]:
    """`run_tags` plus the data version this run validated and trained on."""
    return {**tags, "data.version": data.version, "data.raw_md5": data.raw_hash,
            "data.remote": data.remote, **{f"data.{s}_md5": h for s, h in data.split_hashes.items()},
            **({"data.feedback_md5": data.feedback_md5} if data.feedback_md5 else {})}
