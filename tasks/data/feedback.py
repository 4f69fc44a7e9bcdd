"""Feedback as data, the merge (the prepare stage runs it; tasks/data/feedback_fold.py makes the
table): the user's source is split exactly as without feedback, so the test split keeps its rows
and its hash; feedback rows whose input is already in any split are skipped (the source's answer
stands; counted); every other row goes to validation or train by a hash of its normalised input
(the same row lands in the same split in every version)."""
from __future__ import annotations

import hashlib

import pandas as pd

from tasks.data.text import normalise

FEEDBACK_FILE = "feedback.csv"          # under feedback.folder; tracked by DVC (feedback.csv.dvc)
QUARANTINE_FILE = "quarantine.csv"      # rows the contract refused, with the reason
SUMMARY_FILE = "summary.json"           # counts and lineage of the last fold
COLUMNS = ("text", "answer", "request_id", "version", "at")


def _validation_point(text: str) -> float:
    digest = hashlib.sha256(" ".join(text.lower().split()).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def merge(parts: dict[str, pd.DataFrame], table: pd.DataFrame, answer_column: str
          ) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """The source's splits plus the feedback table's new inputs in train and validation (the
    validation share of the source's train + validation, by a hash of the input); the test split
    is returned as it came."""
    if table.empty:
        return parts, {"train": 0, "validation": 0, "already_in_source": 0}
    seen = set(pd.concat([normalise(p["text"]) for p in parts.values()]).dropna())
    new = table[~normalise(table["text"]).isin(seen)]
    share = len(parts["validation"]) / max(len(parts["validation"]) + len(parts["train"]), 1)
    rows = pd.DataFrame({"text": new["text"].astype("string"), answer_column: new["answer"].astype("string")})
    for extra in (c for c in parts["train"].columns if c not in rows.columns):   # data.group_col: a group each
        rows[extra] = ["feedback-" + hashlib.sha256(t.encode("utf-8")).hexdigest()[:12] for t in rows["text"]]
    to_validation = new["text"].map(_validation_point).to_numpy() < share
    out = dict(parts)
    for split, mask in (("validation", to_validation), ("train", ~to_validation)):
        added = rows[mask]
        if len(added):
            out[split] = pd.concat([parts[split], added.astype(parts[split].dtypes.to_dict())], ignore_index=True)
    return out, {"train": int((~to_validation).sum()), "validation": int(to_validation.sum()),
                 "already_in_source": int(len(table) - len(new))}
