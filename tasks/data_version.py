"""DVC around the data stages: reproduce, push to the local remote, and read the hashes."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tasks.data import SPLITS


class DataPipelineError(RuntimeError):
    """A DVC command failed; the message carries its output."""


@dataclass(frozen=True)
class DataVersion:
    split_files: dict[str, Path]     # split -> parquet path
    split_hashes: dict[str, str]     # split -> DVC md5 from dvc.lock
    raw_hash: str
    remote: str

    @property
    def version(self) -> str:
        """One id for the three splits together."""
        blob = "|".join(f"{s}:{self.split_hashes[s]}" for s in SPLITS)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _env() -> dict[str, str]:
    # dvc.yaml runs `python -m tasks.data`: that python must be this environment's.
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return env


def dvc(root: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=_env(),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise DataPipelineError(f"`dvc {' '.join(args)}` failed in {root} (exit {proc.returncode}):\n"
                                f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return proc.stdout


def ensure_dvc(root: Path, remote: Path) -> None:
    """`dvc init` where needed and point the default remote at `remote` (local config only)."""
    if not (root / ".dvc").is_dir():
        dvc(root, "init", "--quiet")
    remote.mkdir(parents=True, exist_ok=True)
    dvc(root, "remote", "add", "--local", "--force", "--default", "adaptflow", str(remote))


def read_lock(root: Path, processed_dir: str, raw_path: str) -> tuple[dict[str, str], str]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    outs = {o["path"]: o["md5"] for stage in lock["stages"].values() for o in stage.get("outs", [])}
    prefix = Path(processed_dir).as_posix()
    hashes = {s: outs[f"{prefix}/{s}.parquet"] for s in SPLITS}
    return hashes, outs[Path(raw_path).as_posix()]


def reproduce_and_push(root: Path, processed_dir: str, raw_path: str, remote: Path) -> DataVersion:
    ensure_dvc(root, remote)
    dvc(root, "repro")
    dvc(root, "push")
    hashes, raw_hash = read_lock(root, processed_dir, raw_path)
    files = {s: root / processed_dir / f"{s}.parquet" for s in SPLITS}
    return DataVersion(split_files=files, split_hashes=hashes, raw_hash=raw_hash, remote=str(remote))


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
