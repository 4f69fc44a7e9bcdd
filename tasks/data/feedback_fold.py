"""Feedback as data, the fold (fold-feedback runs it): accepted feedback rows -> one row per
input (conflicts resolved: the majority answer wins, a tie drops the input; both counted) ->
inputs in the test split excluded (counted) -> rows the data contract refuses quarantined with the
row and the expectation it failed (Great Expectations, the same bounds as the split gate) -> the
feedback table (tasks/data/feedback.py merges it)."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from tasks.config import ValidationSettings
from tasks.data.feedback import COLUMNS
from tasks.data.text import normalise


@dataclass(frozen=True)
class Folded:
    table: pd.DataFrame                 # text, answer, request_id (of the first vote), version, at
    quarantined: pd.DataFrame           # the same columns + reason
    counts: dict[str, int] = field(default_factory=dict)


def resolve_conflicts(votes: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """One row per normalised input: the answer most votes give; a tie between the top answers
    drops the input. `votes`: text, answer, request_id, version, at (one row per accepted feedback)."""
    if votes.empty:
        return votes.reindex(columns=list(COLUMNS)), {"inputs": 0, "conflicting_inputs": 0, "resolved_by_majority": 0,
                                                      "dropped_ties": 0}
    votes = votes.assign(_key=normalise(votes["text"]), _answer=votes["answer"].astype("string").str.strip())
    kept, conflicting, ties = [], 0, 0
    for _, group in votes.groupby("_key", sort=True):
        tally = group["_answer"].value_counts()
        if len(tally) > 1:
            conflicting += 1
            if tally.iloc[0] == tally.iloc[1]:
                ties += 1
                continue
        winner = tally.index[0]
        kept.append(group[group["_answer"] == winner].sort_values("at").iloc[0])
    table = pd.DataFrame(kept).reindex(columns=list(COLUMNS)).reset_index(drop=True) if kept else \
        pd.DataFrame(columns=list(COLUMNS))
    return table, {"inputs": int(votes["_key"].nunique()), "conflicting_inputs": conflicting,
                   "resolved_by_majority": conflicting - ties, "dropped_ties": ties}


def exclude(table: pd.DataFrame, texts: pd.Series) -> tuple[pd.DataFrame, int]:
    """`table` without the inputs (normalised) that are among `texts` (the test split's): feedback
    never changes what every version is scored on."""
    held = set(normalise(texts).dropna())
    inside = normalise(table["text"]).isin(held) if len(table) else pd.Series([], dtype=bool)
    return table[~inside].reset_index(drop=True), int(inside.sum())


def contract_expectations(labels: list[str], rules: ValidationSettings, has_labels: bool) -> list:
    """The row rules of the split gate a feedback row must pass: input and answer present and not
    blank, the input within validation.text_*_chars, a label in the label set."""
    import great_expectations as gx

    e = gx.expectations
    out = [e.ExpectColumnValuesToNotBeNull(column="text"), e.ExpectColumnValuesToNotMatchRegex(column="text", regex=r"^\s*$"),
           e.ExpectColumnValuesToNotBeNull(column="answer"),
           e.ExpectColumnValuesToNotMatchRegex(column="answer", regex=r"^\s*$"),
           e.ExpectColumnValueLengthsToBeBetween(column="text", min_value=rules.text_min_chars,
                                                 max_value=rules.text_max_chars)]
    if has_labels:
        out.append(e.ExpectColumnValuesToBeInSet(column="answer", value_set=list(labels)))
    return out


def quarantine(table: pd.DataFrame, labels: list[str], rules: ValidationSettings, has_labels: bool
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows the contract accepts, rows it refuses with `reason`: every expectation a row failed,
    as Great Expectations names it). Nothing is dropped silently."""
    from tasks.data.contract import _run

    if table.empty:
        return table, table.assign(reason=pd.Series(dtype="string"))
    frame = table.reset_index(drop=True)
    result = _run({"feedback": (frame, contract_expectations(labels, rules, has_labels))}, None)["feedback"]
    reasons: dict[int, list[str]] = {}
    for r in result.results:
        if not r.success:
            column = r.expectation_config.kwargs.get("column")
            for i in r.result.get("unexpected_index_list") or []:
                reasons.setdefault(int(i), []).append(f"{r.expectation_config.type} ({column})")
    bad = sorted(reasons)
    refused = frame.loc[bad].assign(reason=["; ".join(reasons[i]) for i in bad])
    return frame.drop(index=bad).reset_index(drop=True), refused.reset_index(drop=True)


def fold(votes: pd.DataFrame, test_texts: pd.Series, labels: list[str], rules: ValidationSettings,
         has_labels: bool) -> Folded:
    """Accepted feedback (one row per vote) -> the feedback table, what was quarantined, the counts."""
    table, counts = resolve_conflicts(votes)
    table, in_test = exclude(table, test_texts)
    table, refused = quarantine(table, labels, rules, has_labels)
    return Folded(table, refused, {"votes": len(votes), **counts, "excluded_test_inputs": in_test,
                                   "quarantined": len(refused), "rows": len(table)})
