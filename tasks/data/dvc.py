"""The DVC driver: write the effective data settings where dvc.yaml reads them, reproduce the
stages (tasks/data/stages.py is what they run), push to the remote, read hashes from dvc.lock."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tasks.config import DataSettings, write_dataset_params
from tasks.data.splits import SPLITS
from tasks.errors import UserError

DATA_PARAMS = "data-params.yaml"   # generated; dvc.yaml reads it; commit it with dvc.lock
# Keys data-params.yaml holds beside the DataSettings fields (resolved where the run started);
# `stage_code`: the version of the code the stages run, a param of `prepare` in dvc.yaml.
# `feedback_file` / `feedback_md5`: the feedback table fold-feedback wrote ("" when none) and its
# hash, a param of `prepare` (a new feedback version re-runs it; no table is no dependency).
STAGE_KEYS = ("source_file", "raw_path", "stage_code", "feedback_file", "feedback_md5")
# What the prepare stage runs (python -m tasks.data.stages), in the installed adaptflow.
STAGE_MODULES = ("prepare.py", "stages.py", "source.py", "feedback.py", "text.py", "splits.py")


class DataPipelineError(RuntimeError, UserError):
    """A DVC command failed; the message carries its output."""


@dataclass(frozen=True)
class DataVersion:
    split_files: dict[str, Path]     # split -> parquet path
    split_hashes: dict[str, str]     # split -> DVC md5 from dvc.lock
    raw_hash: str
    remote: str
    raw_path: str = ""                # the DVC-tracked copy of the source, relative to the project
    source: str = ""                  # data.source as configured (the dataset's identity for drift)
    feedback_md5: str = ""            # the feedback table merged into train/validation ("" none)

    @property
    def version(self) -> str:
        """One id for the three splits together."""
        blob = "|".join(f"{s}:{self.split_hashes[s]}" for s in SPLITS)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _env() -> dict[str, str]:
    # dvc.yaml runs `python -m tasks.data.stages`: that python must be this environment's.
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return env


class NotAGitRepository(DataPipelineError):
    """The project folder is not inside a git work tree (DVC versions data beside git)."""


def dvc(root: Path, *args: str) -> str:
    """A DVC command in `root`; a failure carries what DVC said (its error is on stderr: never
    run it with --quiet, which leaves only the exit code)."""
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=_env(),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        said = (proc.stdout[-2000:] + proc.stderr[-3000:]).strip() or "(DVC printed nothing)"
        raise DataPipelineError(f"`dvc {' '.join(args)}` failed in {root} (exit {proc.returncode}):\n{said}")
    return proc.stdout


def require_git(root: Path) -> None:
    """adaptflow versions the data with DVC, and DVC works inside a git repository: a project folder
    outside one is refused with what to run, before anything starts."""
    try:
        proc = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        raise NotAGitRepository("adaptflow versions data with DVC, which needs git; git is not installed "
                                "(install it, e.g. `apt-get install git`)") from None
    if proc.returncode != 0 or proc.stdout.strip() != "true":
        raise NotAGitRepository(f"{root} is not a git repository, and adaptflow versions the data with DVC, "
                                f"which works inside one. Run `adaptflow init` there (git init, dvc init, a "
                                f"params.yaml and dvc.yaml of your own), or `git init` if the project files "
                                f"are already in place")


def ensure_dvc(root: Path, remote: Path | str) -> None:
    """`dvc init` where needed and point the default remote at `remote` (local config only)."""
    if not (root / ".dvc").is_dir():
        require_git(root)
        dvc(root, "init")
    if isinstance(remote, Path):   # a URL remote (s3://...) is not ours to create
        remote.mkdir(parents=True, exist_ok=True)
    _default_remote(root, str(remote))


def _default_remote(root: Path, url: str) -> None:
    """What `dvc remote add --local --force --default adaptflow URL` does, through DVC's config
    API in this process (the command's own code, dvc/commands/remote.py; validated and written
    the same way): as a command it cost a DVC process, 0.9 s, on every run."""
    from dvc.config import Config, ConfigError

    try:
        with Config(dvc_dir=str(root / ".dvc")).edit("local") as conf:
            conf["remote"]["adaptflow"] = {"url": url}
            conf["core"]["remote"] = "adaptflow"
    except ConfigError as exc:
        raise DataPipelineError(f"DVC refused the remote {url!r} (params data.dvc_remote) in "
                                f"{root / '.dvc' / 'config.local'}: {exc}") from None


@dataclass(frozen=True)
class RawData:
    """The source file as ingested: the DVC-tracked copy and its hash."""
    path: Path                        # absolute path of data/raw/<file>
    raw_path: str                     # the same, relative to the project (as in dvc.lock)
    md5: str
    source: str                       # data.source as configured
    source_file: Path                 # where it was copied from


def stage_code() -> str:
    """`adaptflow <version> <sha256 of the stage modules>`: the code `python -m tasks.data.stages`
    runs, from whichever adaptflow is installed. dvc.yaml names it as a param of `prepare`, not
    as paths under tasks/ (a project of the user's own has none): new code, new splits."""
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in STAGE_MODULES:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
    try:
        installed = version("adaptflow")
    except PackageNotFoundError:   # run from a source tree that was never installed
        installed = "(not installed)"
    return f"adaptflow {installed} {digest.hexdigest()[:16]}"


def feedback_table(root: Path, folder: str) -> tuple[str, str]:
    """(the feedback table's path relative to the project, its md5), or ("", "") when
    fold-feedback has not written one."""
    from tasks.data.feedback import FEEDBACK_FILE

    path = root / folder / FEEDBACK_FILE
    if not path.is_file():
        return "", ""
    return (path.relative_to(root).as_posix() if path.resolve().is_relative_to(root.resolve()) else str(path),
            hashlib.md5(path.read_bytes()).hexdigest())


def write_data_params(root: Path, data: DataSettings, source_file: Path, feedback_folder: str = "data/feedback") -> Path:
    """data-params.yaml: the effective `data:` settings (params.yaml + profile + command line),
    plus the resolved source file and the raw copy's path, for dvc.yaml and its stages to read."""
    # Inside the project (the packaged corpus under .venv/) the path is kept relative, so
    # dvc.lock reads the same in every clone.
    inside = source_file.resolve().is_relative_to(root.resolve())
    extra = {"source_file": str(source_file.resolve().relative_to(root.resolve()) if inside else source_file),
             "raw_path": data.raw_path, "stage_code": stage_code()}
    extra["feedback_file"], extra["feedback_md5"] = feedback_table(root, feedback_folder)
    header = ("# Generated by `adaptflow run` from params.yaml's data: section, the profile and the command\n"
              "# line (named dataset: here: DVC also reads params.yaml, and a name may be defined once).\n"
              "# dvc.yaml reads it. Commit it with dvc.lock: `dvc pull` needs both.\n")
    path = root / DATA_PARAMS
    write_dataset_params(path, data, extra, header)
    return path


def lock_outs(root: Path) -> dict[str, str]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for stage in lock["stages"].values() for o in stage.get("outs", [])}


def reproduce_ingest(root: Path, data: DataSettings, source_file: Path, remote: Path | str,
                     feedback_folder: str = "data/feedback") -> RawData:
    """`dvc repro ingest`: the source, byte for byte, under DVC control."""
    ensure_dvc(root, remote)
    write_data_params(root, data, source_file, feedback_folder)
    if _stale(root, "ingest"):
        dvc(root, "repro", "ingest")
    return RawData(root / data.raw_path, data.raw_path, lock_outs(root)[data.raw_path], data.source, source_file)


def reproduce_splits(root: Path, data: DataSettings, raw: RawData, remote: Path | str) -> DataVersion:
    """`dvc repro`: the prepare stage (clean and split) on the ingested file; hashes from dvc.lock."""
    if _stale(root):
        dvc(root, "repro")
    outs, prefix = lock_outs(root), Path(data.processed_dir).as_posix()
    hashes = {s: outs[f"{prefix}/{s}.parquet"] for s in SPLITS}
    files = {s: root / data.processed_dir / f"{s}.parquet" for s in SPLITS}
    feedback_md5 = (yaml.safe_load((root / DATA_PARAMS).read_text()) or {}).get("dataset", {}).get("feedback_md5", "")
    return DataVersion(split_files=files, split_hashes=hashes, raw_hash=raw.md5, remote=str(remote),
                       raw_path=raw.raw_path, source=raw.source, feedback_md5=feedback_md5 or "")


def push(root: Path) -> None:
    """`dvc push`: after this, a fresh clone with dvc.lock can `dvc pull` these exact files."""
    if _stale(root, cloud=True):
        dvc(root, "push")


def _stale(root: Path, *targets: str, cloud: bool = False) -> bool:
    """Whether `dvc repro [targets]` (or, cloud: `dvc push`) has anything to do, by DVC's own
    status asked in this process: 0.1 s against a DVC command's 0.5-0.6 s of start-up, three
    times a run, when the data has not changed. When there is work, or the status cannot be
    read, the command runs as before (and says what went wrong in its own words)."""
    from dvc.repo import Repo

    # A stage named alone is looked up in the dvc.yaml of the current folder, which need not be
    # the project's (the command runs in the project): name its dvc.yaml.
    named = [f"{root / 'dvc.yaml'}:{target}" for target in targets] or None
    try:
        with Repo(str(root)) as repo:
            return bool(repo.status(targets=named, cloud=cloud))
    except Exception:   # noqa: BLE001 -- whatever DVC's API raises, the command is the reference
        return True
