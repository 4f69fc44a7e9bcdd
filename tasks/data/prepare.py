"""Preparing the user's table for training: rename its columns to text/label, map and drop
labels as configured, drop empty and duplicate texts only when configured to, and split it: by
the file's own split column, grouped by a column (no group in two splits), or stratified by
label. Pure functions on DataFrames; the DVC stage `prepare` (tasks/data/stages.py) runs them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tasks.config import DataSettings
from tasks.data.splits import SPLITS
from tasks.data.text import normalise  # noqa: F401  (tasks.data.prepare.normalise: the contract's import)
from tasks.errors import UserError

# Values accepted in a user's split column; anything else is a validation error.
SPLIT_VALUES = {"train": "train", "validation": "validation", "val": "validation", "valid": "validation",
                "dev": "validation", "test": "test"}


class PrepareError(ValueError, UserError):
    """The data cannot be split as configured; the message says which setting to change."""


def kept_labels(raw_labels: pd.Series, drop_labels: list[str], label_map: dict[str, str]
                ) -> tuple[pd.Series, pd.Series]:
    """(which rows are kept, each row's label after label_map): the one place data.drop_labels
    and data.label_map are applied, by `clean` and by the raw-data gate alike."""
    keep = ~raw_labels.isin(drop_labels)
    return keep, raw_labels.map(label_map) if label_map else raw_labels


def clean(df: pd.DataFrame, d: DataSettings) -> pd.DataFrame:
    """Columns renamed to text/label (generation: text/target) (+ the group column); labels
    dropped and mapped as configured; unreadable files, empty texts and repeats (first kept)
    dropped only when configured. Everything else is left for the validation gate to report."""
    return cleaned(df, d)[0]


def cleaned(df: pd.DataFrame, d: DataSettings) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    """`clean`'s frame and what it dropped: reason -> the rows (as read) dropped for it, so the
    raw gate can count and log every dropped row."""
    from tasks.data.source import DECODE_ERROR

    extra = [c for c in (d.group_col, d.split_col) if c]
    dropped: dict[str, list[int]] = {}

    def drop(reason: str, mask: pd.Series) -> None:
        nonlocal df
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            dropped[reason] = [int(i) for i in df.index[mask]]
            df = df[~mask]

    if d.drop_undecodable and DECODE_ERROR in df.columns:
        drop(f"not valid {d.encoding}", df[DECODE_ERROR].notna())
    if d.target_col:   # generation: an input and the target to write
        df = df.assign(text=df[d.text_col].astype("string").str.strip(),
                       target=df[d.target_col].astype("string").str.strip())
        columns = ["text", "target"]
    else:
        keep, labels = kept_labels(df[d.label_col], d.drop_labels, d.label_map)
        drop("label in data.drop_labels", ~keep)
        df = df.assign(label=labels[df.index], text=df[d.text_col].astype("string").str.strip())
        columns = ["text", "label"]
    if d.drop_empty_texts:
        drop("empty text", (df[columns[0]].isna() | (df[columns[0]] == "")) |
             ((df["target"].isna() | (df["target"] == "")) if d.target_col else False))
    if d.drop_duplicate_texts:
        key = normalise(df["text"]) + ("\x00" + normalise(df["target"]) if d.target_col else "")
        drop("duplicate (input, target) pair" if d.target_col else "duplicate text", key.duplicated(keep="first"))
    keep_extra = [c for c in extra if c not in columns]
    return df[[*columns, *keep_extra]].reset_index(drop=True), dropped


def split_counts(n: int, validation_size: float, test_size: float) -> dict[str, int]:
    """Sizes below 1 are fractions of n, the others row counts."""
    count = lambda x: int(round(x * n)) if x < 1 else int(x)
    return {"validation": count(validation_size), "test": count(test_size)}


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


def stratified_split(df: pd.DataFrame, sizes: dict[str, int], seed: int) -> dict[str, pd.DataFrame]:
    """Each label's rows, in a seeded random order, give test and validation their share of
    that label (the split sizes over all rows); the rest is train. Rows keep the file's order."""
    rng, n = np.random.default_rng(seed), len(df)
    which = np.full(n, "train", dtype=object)
    strata = df["label"] if "label" in df.columns else pd.Series("", index=df.index)   # generation: no label
    for _, index in sorted(df.groupby(strata.to_numpy(), dropna=False).indices.items(), key=lambda kv: str(kv[0])):
        index = rng.permutation(index)
        k_test = int(round(len(index) * sizes["test"] / n))
        k_val = int(round(len(index) * sizes["validation"] / n))
        which[index[:k_test]] = "test"
        which[index[k_test:k_test + k_val]] = "validation"
    return {s: df[which == s].reset_index(drop=True) for s in SPLITS}


def column_split(df: pd.DataFrame, split_col: str) -> dict[str, pd.DataFrame]:
    which = df[split_col].astype("string").str.strip().str.lower().map(SPLIT_VALUES)
    bad = df[which.isna()]
    if len(bad):
        raise PrepareError(f"data.split_col={split_col!r}: {len(bad)} row(s) have no split value "
                           f"({', '.join(sorted(set(SPLIT_VALUES)))}), e.g. row {bad.index[0]}: "
                           f"{bad[split_col].iloc[0]!r}")
    return {s: df[which == s].drop(columns=[split_col]).reset_index(drop=True) for s in SPLITS}


def linked_groups(keys: list[pd.Series]) -> pd.Series:
    """One group id per row such that rows sharing a value in any of `keys` share a group
    (connected components, union-find): e.g. no headline and no lead paragraph in two splits."""
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i in range(len(keys[0])):
        nodes = [(j, k.iloc[i]) for j, k in enumerate(keys) if pd.notna(k.iloc[i])]
        for a, b in zip(nodes, nodes[1:]):
            parent[find(a)] = find(b)
    return pd.Series([str(find(next((j, k.iloc[i]) for j, k in enumerate(keys) if pd.notna(k.iloc[i]))))
                      for i in range(len(keys[0]))], index=keys[0].index)


def split_rows(df: pd.DataFrame, d: DataSettings) -> dict[str, pd.DataFrame]:
    """The user's split column if any; else grouped by group_col if any; else stratified.
    Generation is always grouped by the input as well: the contract refuses an input in two
    splits, so the splitter never makes one (BBC News repeats leads under reworded headlines).
    Every split gets at least data.min_split_rows rows, or PrepareError says why not."""
    if d.split_col:
        return check_reached(column_split(df, d.split_col), d, None, f"data.split_col={d.split_col!r}")
    sizes = split_counts(len(df), d.validation_size, d.test_size)
    check_sizes(len(df), sizes, d)
    if "target" in df.columns:
        keys = [normalise(df["text"]).fillna("")] + ([df[d.group_col].astype("string")] if d.group_col else [])
        linked = df.assign(_linked=linked_groups(keys))
        parts = grouped_split(linked, "_linked", sizes, d.split_seed)
        what = (f"rows sharing an input or a data.group_col={d.group_col!r} value stay together" if d.group_col
                else "rows sharing an input stay together")
        return check_reached({s: part.drop(columns=["_linked"]) for s, part in parts.items()}, d,
                             linked["_linked"], what, sizes)
    if d.group_col:
        return check_reached(grouped_split(df, d.group_col, sizes, d.split_seed), d, df[d.group_col].fillna(""),
                             f"data.group_col={d.group_col!r}: whole groups go to one split", sizes)
    return check_reached(stratified_split(df, sizes, d.split_seed), d, None, "stratified by label", sizes)


def check_sizes(n: int, sizes: dict[str, int], d: DataSettings) -> None:
    """The sizes asked for fit the rows: validation and test at least data.min_split_rows each,
    and enough left for training; otherwise a refusal with the numbers."""
    floor, train = d.min_split_rows, n - sizes["validation"] - sizes["test"]
    asked = {"validation": f"data.validation_size={d.validation_size:g}", "test": f"data.test_size={d.test_size:g}"}
    small = [f"{asked[s]} gives {sizes[s]} {s} row(s)" for s in ("validation", "test") if sizes[s] < floor]
    if train < floor:
        small.append(f"{sizes['validation']} validation + {sizes['test']} test row(s) leave {max(train, 0)} for training")
    if small:
        raise PrepareError(f"{n} rows cannot be split as asked: {'; '.join(small)}; every split needs at least "
                           f"data.min_split_rows={floor}. Change data.validation_size / data.test_size (with --data "
                           f"FILE: --validation-size / --test-size; below 1 a share of the rows, else a count), "
                           f"bring more rows, or lower data.min_split_rows")


def check_reached(parts: dict[str, pd.DataFrame], d: DataSettings, groups: pd.Series | None, how: str,
                  sizes: dict[str, int] | None = None) -> dict[str, pd.DataFrame]:
    """Each split has at least data.min_split_rows rows, or a refusal naming what each got and,
    for a grouped split, the groups too big to place (their sizes)."""
    got = {s: len(p) for s, p in parts.items()}
    short = [s for s in SPLITS if got[s] < d.min_split_rows]
    if not short:
        return parts
    wanted = "" if sizes is None else (f" (asked: validation {sizes['validation']}, test {sizes['test']}, "
                                       f"train the rest)")
    message = (f"the split gave {', '.join(f'{s} {got[s]}' for s in SPLITS)} rows{wanted}; {', '.join(short)} "
               f"fall(s) below data.min_split_rows={d.min_split_rows} ({how})")
    if groups is not None:
        counts = groups.value_counts()
        big = ", ".join(f"{name!r}: {int(c)}" if not groups.name == "_linked" else f"{int(c)}"
                        for name, c in counts.head(5).items())
        message += (f". {len(counts)} group(s) for {int(counts.sum())} rows; the largest hold {big} rows, so whole "
                    f"groups cannot fill every split. Group by a column with more, smaller groups, give the "
                    f"file a split column (data.split_col / --split-col), or change the split sizes")
    else:
        message += ". Fix the split column's values or bring more rows"
    raise PrepareError(message)


def prepare(d: DataSettings, raw: Path, feedback: Path | None = None) -> dict[str, int]:
    """Read the raw file, clean and split it, add the feedback table's new inputs to train and
    validation (tasks/data/feedback.py: the test split stays as the source alone makes it), write
    the three parquet files; rows per split (and from feedback)."""
    from tasks.data.source import detect_format, read_table

    frame, problems = read_table(raw, detect_format(raw, d.format), d.delimiter, d.encoding,
                                  d.max_decompressed_mb)
    if problems:   # the raw gate reports these before prepare runs; by hand, say so plainly
        raise PrepareError("; ".join(p.message for p in problems))
    parts = split_rows(clean(frame, d), d)
    added = {}
    if feedback is not None and feedback.is_file():
        from tasks.data.feedback import merge

        table = pd.read_csv(feedback, dtype="string", keep_default_na=False)
        parts, added = merge(parts, table, "target" if d.target_col else "label")
    out_dir = Path(d.processed_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        part.to_parquet(out_dir / f"{name}.parquet", index=False)
    return {name: len(part) for name, part in parts.items()} | {f"feedback_{k}": v for k, v in added.items()}
