"""The data contract: a Great Expectations suite run on every split, a hard gate before training.

Checks per split: required columns, text not null and not blank, labels in the declared set,
text length bounds, and no (normalised) text shared with another split.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

REQUIRED_COLUMNS = ("text", "label")
_NORM = "_text_normalised"   # derived column: lower-case, whitespace folded (leakage check)


class DataValidationError(RuntimeError):
    """The data broke its contract; training must not start."""


@dataclass(frozen=True)
class Failure:
    split: str
    expectation: str
    column: str | None
    unexpected_count: int | None
    examples: list[str]          # quoted rows: "row 12: 'text…'"

    def describe(self) -> str:
        count = "" if self.unexpected_count is None else f" ({self.unexpected_count} row(s))"
        rows = "".join(f"\n      {e}" for e in self.examples)
        where = f" column '{self.column}'" if self.column else ""
        return f"  - {self.split}:{where} failed {self.expectation}{count}{rows}"


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    evaluated: int
    failures: list[Failure] = field(default_factory=list)
    per_split: dict[str, dict] = field(default_factory=dict)   # GE result as JSON, per split

    def message(self, files: dict[str, Path]) -> str:
        lines = [f"data validation failed: {len(self.failures)} of {self.evaluated} expectations "
                 f"did not hold; nothing was trained or registered."]
        lines += [f.describe() + f"\n      file: {files.get(f.split, '?')}" for f in self.failures]
        lines.append("Fix the data (or the bounds under `validation:` in params.yaml) and run again.")
        return "\n".join(lines)

    def summary(self) -> dict:
        return {"success": self.success, "evaluated_expectations": self.evaluated,
                "failures": [f.__dict__ for f in self.failures]}


def normalise(text: pd.Series) -> pd.Series:
    return text.astype("string").str.lower().str.split().str.join(" ")


def _suite(name: str, labels: list[str], min_chars: int, max_chars: int, elsewhere: list[str]):
    import great_expectations as gx

    e = gx.expectations
    suite = gx.ExpectationSuite(name=name)
    for column in REQUIRED_COLUMNS:
        suite.add_expectation(e.ExpectColumnToExist(column=column))
    suite.add_expectation(e.ExpectColumnValuesToNotBeNull(column="text"))
    suite.add_expectation(e.ExpectColumnValuesToNotMatchRegex(column="text", regex=r"^\s*$"))
    suite.add_expectation(e.ExpectColumnValueLengthsToBeBetween(
        column="text", min_value=min_chars, max_value=max_chars))
    suite.add_expectation(e.ExpectColumnValuesToNotBeNull(column="label"))
    suite.add_expectation(e.ExpectColumnValuesToBeInSet(column="label", value_set=labels))
    suite.add_expectation(e.ExpectColumnValuesToNotBeInSet(column=_NORM, value_set=elsewhere))
    return suite


def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _examples(frame: pd.DataFrame, result: dict, limit: int) -> list[str]:
    index = (result.get("unexpected_index_list") or [])[:limit]
    rows = []
    for i in index:
        row = frame.loc[i]
        text = row.get("text")
        shown = repr(text if not isinstance(text, str) or len(text) <= 80 else text[:77] + "...")
        label = f", label={row.get('label')!r}" if "label" in frame.columns else ""
        rows.append(f"row {i}: text={shown}{label}")
    if not rows and result.get("partial_unexpected_list"):
        rows = [f"value: {v!r}" for v in result["partial_unexpected_list"][:limit]]
    return rows


def validate_splits(frames: dict[str, pd.DataFrame], labels: list[str], min_chars: int,
                    max_chars: int, example_rows: int = 5) -> ValidationReport:
    """Run the suite on each split; the leakage check compares against the other splits."""
    context = _context()
    source = context.data_sources.add_pandas("adaptflow")
    norms = {s: set(normalise(f["text"]).dropna()) if "text" in f.columns else set()
             for s, f in frames.items()}
    failures, evaluated, per_split = [], 0, {}
    for split, frame in frames.items():
        frame = frame.reset_index(drop=True)
        checked = frame.assign(**{_NORM: normalise(frame["text"])}) if "text" in frame.columns else frame
        elsewhere = sorted(set().union(*(n for s, n in norms.items() if s != split)))
        suite = _suite(f"adaptflow-{split}", labels, min_chars, max_chars, elsewhere)
        batch = (source.add_dataframe_asset(split).add_batch_definition_whole_dataframe("all")
                 .get_batch(batch_parameters={"dataframe": checked}))
        result = batch.validate(suite, result_format="COMPLETE")
        evaluated += result.statistics["evaluated_expectations"]
        per_split[split] = _compact(result.to_json_dict())
        for r in result.results:
            if r.success:
                continue
            column = r.expectation_config.kwargs.get("column")
            failures.append(Failure(
                split=split,
                expectation=r.expectation_config.type + ("" if r.exception_info.get("raised_exception") is not True
                                                         else " (could not run: column missing?)"),
                column="text (normalised: shared with another split)" if column == _NORM else column,
                unexpected_count=r.result.get("unexpected_count"),
                examples=_examples(frame, r.result, example_rows),
            ))
    return ValidationReport(success=not failures, evaluated=evaluated, failures=failures,
                            per_split=per_split)


def _compact(result: dict) -> dict:
    """The GE result without the (possibly huge) value sets and full unexpected lists."""
    for r in result.get("results", []):
        r.get("expectation_config", {}).get("kwargs", {}).pop("value_set", None)
        for key in ("unexpected_list", "unexpected_index_list", "unexpected_index_query"):
            r.get("result", {}).pop(key, None)
    return json.loads(json.dumps(result, default=str))
