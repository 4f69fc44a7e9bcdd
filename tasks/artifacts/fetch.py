"""A registered version's folder, fetched from the registry only when it is adaptflow's own."""
from __future__ import annotations

from pathlib import Path

from tasks.artifacts.manifest import MANIFEST
from tasks.artifacts.predictor import RegisteredBase
from tasks.artifacts.provenance import ForeignArtifact, artifact_problems, strategy_path


def fetch_version(model: str, version: str, dest: Path) -> Path:
    """Download the strategy folder of `models:/model/version` under dest and return it. Only the
    MLmodel file is read first; a version whose artifact is not adaptflow's (a pickle, code, a
    file type adaptflow does not write, another flavor) is refused before its files are fetched
    (tasks/artifacts/provenance.py). Nothing stored with a version is ever executed."""
    import yaml
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    dest.mkdir(parents=True, exist_ok=True)
    repo = ModelsArtifactRepository(f"models:/{model}/{version}")
    top = [Path(f.path).name for f in repo.list_artifacts("")]
    if "MLmodel" not in top:
        raise ForeignArtifact(f"{model} v{version} was not logged by adaptflow (no MLmodel file); refused")
    mlmodel = yaml.safe_load(Path(repo.download_artifacts("MLmodel", str(dest))).read_text()) or {}
    problems = artifact_problems(mlmodel, top, [MANIFEST], MANIFEST)   # the folder is checked once fetched
    if not problems:
        folder = Path(repo.download_artifacts(strategy_path(mlmodel), str(dest)))
        files = [p for p in folder.rglob("*") if p.is_file() or p.is_symlink()]
        links = [p.name for p in files if p.is_symlink()]
        problems = artifact_problems(mlmodel, top, [str(p.relative_to(folder)) for p in files], MANIFEST)
        problems += [f"symbolic links {links[:5]}"] if links else []
    if problems:
        raise ForeignArtifact(f"{model} v{version} is not an adaptflow artifact and is refused "
                              f"(nothing of it was loaded): {'; '.join(problems)}")
    return folder


def registered_base(model: str, version: str, client=None) -> RegisteredBase:
    """What the registry recorded about the base of `models:/model/version` when adaptflow
    registered it (its `base.registered` tag, then that base version's `base.name` and
    `fingerprint` tags): the loader binds the version to it instead of to its own manifest.
    A version without that record was not registered by adaptflow's `register_best`: refused."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = client or MlflowClient()
    where = client.get_model_version(model, version).tags.get("base.registered", "")
    name, _, number = where.rpartition("/")
    try:
        tags = client.get_model_version(name, number).tags if name and number.isdigit() else {}
    except MlflowException:
        tags = {}
    if not (tags.get("base.name") and tags.get("fingerprint")):
        raise ForeignArtifact(f"{model} v{version} has no base recorded by the registry (tag base.registered "
                              f"{where!r} names no base version with base.name and fingerprint tags); adaptflow "
                              f"records one for every version it registers; refused")
    return RegisteredBase(name=tags["base.name"], fingerprint=tags["fingerprint"], where=where)
