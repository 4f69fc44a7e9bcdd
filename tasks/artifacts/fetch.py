"""A registered version's folder, fetched from the registry only when it is adaptflow's own."""
from __future__ import annotations

from pathlib import Path

from tasks.artifacts.manifest import MANIFEST
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
