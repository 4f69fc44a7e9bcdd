"""The data contract: Great Expectations suites, written as code, run as a hard gate twice
before any training -- on the raw file as ingested, and on the train/validation/test splits.

raw file: it decodes and parses; it has rows; the configured columns exist; labels are not null,
  are known (label_map keys, or the declared set) and number between 2 and max_classes; texts
  are not null or blank (unless configured to be dropped) and within the character bounds; the
  split column (if any) holds train/validation/test.
each split: text/label (and group) columns; text not null, not blank, within character and
  token bounds; at most max_share_over_max_length of texts longer than model.max_length; no
  duplicate (normalised) text; no text and no group shared with another split; every label
  present with at least min_examples_per_label rows; no class above max_class_share.

task: generation (data.target_col): the same gates on input and target instead of text and label:
both exist and are non-empty; prompt + target tokens within model.max_length for all but
max_share_over_max_length of the examples; target tokens within generation's bounds; no
duplicate (input, target) pair; no input (and no group) in two splits. The same input with
different targets, and the longest texts with the truncation they get, are warnings.

Checks that compare rows with other rows or splits run on derived columns computed here (for
example `_shared_with`: the other split holding the same normalised text), so the suites stay
small and each failure still names its rows. Every run renders GE Data Docs (HTML).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from tasks.config import DataSettings, Settings, ValidationSettings
from tasks.data.prepare import SPLIT_VALUES, kept_labels, normalise
from tasks.data.source import ReadProblem, line_of
from tasks.errors import UserError
from tasks.tasktypes import task_type

# Derived columns: what each means in a message.
DERIVED = {"_label": "label (after label_map)", "_split": "split", "_norm": "text (normalised)",
           "_tokens": "text (tokens)", "_shared_with": "text (normalised: also in another split)",
           "_group_shared_with": "group (also in another split)",
           "_label_count": "label (rows of this label in the split)", "_label_share": "label (share of the split)",
           "_target_tokens": "target (tokens)", "_pair_norm": "(input, target) pair (normalised)",
           "_decode_error": "file (bytes not valid in data.encoding)"}
# How to fix each kind of failure, in one line.
HINTS = {
    "expect_table_row_count_to_be_between": "the file has no data rows",
    "expect_column_to_exist": "name the right column (--text-col/--label-col/--split-col/--group-col or data.*_col)",
    "expect_column_values_to_not_be_null": "fill or remove these rows",
    "expect_column_values_to_not_match_regex": "remove the blank texts (or set data.drop_empty_texts: true; with "
                                               "--data FILE: --drop-empty-texts)",
    "expect_column_values_to_be_in_set": "fix these values, or declare them (validation.labels / data.label_map / data.drop_labels)",
    "expect_column_unique_value_count_to_be_between": "a classifier needs 2 to validation.max_classes labels; is --label-col the label?",
    "expect_column_value_lengths_to_be_between": "shorten or remove these texts (or change validation.text_*_chars)",
    "expect_column_values_to_be_between": "see the bound in the expectation; change the data or the bound under validation:",
    "expect_column_values_to_be_unique": "remove the duplicates (or set data.drop_duplicate_texts: true; with "
                                         "--data FILE: --drop-duplicate-texts)",
    "expect_column_values_to_be_null": "a text or group in two splits leaks test data into training; fix the split column or group",
    "expect_column_distinct_values_to_contain_set": "every label needs examples in every split (more data, or larger split sizes)",
    "expect_column_max_to_be_between": "one class dominates; rebalance the data or raise validation.max_class_share",
}
# A split's own hint where the raw file's would mislead.
SPLIT_HINTS = {
    "expect_table_row_count_to_be_between": "every split needs at least data.min_split_rows rows: change the split "
                                            "sizes or the file's split column, or bring more rows",
}
GENERATION_HINTS = {
    "expect_column_values_to_be_unique": "remove the repeated (input, target) pairs (or set data.drop_duplicate_texts: "
                                         "true; with --data FILE: --drop-duplicate-texts)",
    "expect_column_values_to_not_match_regex": "remove the rows with a blank input or target (or set "
                                               "data.drop_empty_texts: true; with --data FILE: --drop-empty-texts)",
    "expect_column_values_to_be_between": "see the bound; shorten the texts, raise model.max_length, or change "
                                          "generation.min/max_target_tokens or validation.max_share_over_max_length",
}


class DataValidationError(RuntimeError, UserError):
    """The data broke its contract; training must not start."""


@dataclass(frozen=True)
class Failure:
    gate: str                    # "raw" or the split name
    expectation: str
    column: str | None
    unexpected_count: int | None
    examples: list[str]          # quoted rows: "row 12: text='…', label='…'"
    detail: str = ""             # observed value and bounds, for checks over the whole column
    hint: str = ""

    def describe(self) -> str:
        count = "" if self.unexpected_count is None else f" ({self.unexpected_count} row(s))"
        detail = f" [{self.detail}]" if self.detail else ""
        rows = "".join(f"\n      {e}" for e in self.examples)
        where = f" column '{self.column}'" if self.column else ""
        hint = f"\n      fix: {self.hint}" if self.hint else ""
        return f"  - {self.gate}:{where} failed {self.expectation}{count}{detail}{rows}{hint}"


@dataclass(frozen=True)
class ValidationReport:
    gate: str                    # "raw" or "splits"
    success: bool
    evaluated: int
    failures: list[Failure] = field(default_factory=list)
    results: dict[str, dict] = field(default_factory=dict)   # GE result JSON per batch
    labels: list[str] = field(default_factory=list)          # the label set in force
    labels_inferred: bool = False
    docs_dir: Path | None = None                              # GE Data Docs site
    warnings: list[str] = field(default_factory=list)         # logged, not a gate (long texts, ...)

    def message(self, files: dict[str, object]) -> str:
        lines = [f"data validation failed ({self.gate}): {len(self.failures)} of {self.evaluated} expectations "
                 f"did not hold; nothing was trained or registered."]
        lines += [f.describe() + f"\n      file: {files.get(f.gate, '?')}" for f in self.failures]
        lines.append("Fix the data (or the bounds under `validation:` in params.yaml) and run again.")
        return "\n".join(lines)

    def summary(self) -> dict:
        return {"gate": self.gate, "success": self.success, "evaluated_expectations": self.evaluated,
                "labels": self.labels, "labels_inferred": self.labels_inferred, "warnings": self.warnings,
                "failures": [f.__dict__ for f in self.failures]}


@dataclass(frozen=True)
class RawContract:
    """What the raw file must satisfy: the dataset's columns and label rules (data:) and the
    bounds (validation:)."""
    data: DataSettings
    rules: ValidationSettings


@dataclass(frozen=True)
class SplitContract:
    """What each split must satisfy: the bounds (validation:), the grouping column and the
    model's max_length (texts beyond it are truncated)."""
    rules: ValidationSettings
    group_col: str | None = None
    max_length: int = 64
    # generation: (min, max) target tokens; None for classification
    target_tokens: tuple[int, int] | None = None
    min_split_rows: int = 1
    profile: str | None = None   # where a setting the refusal names is set (params.yaml, or the profile)

    @classmethod
    def from_settings(cls, s: Settings) -> "SplitContract":
        g = s.generation
        bounds = (g.min_target_tokens, g.max_target_tokens) if task_type(s.task).generates else None
        return cls(s.validation, s.data.group_col, s.model.max_length, bounds, s.data.min_split_rows, s.profile)


class _CompiledTemplates:
    """A process-wide Jinja bytecode cache for Great Expectations' Data Docs. GE gives every view a
    new Jinja Environment (render/view/view.py: DefaultJinjaView.__init__), so each build compiled
    its ~50 templates again: 2.3 of the 2.6 s that building Data Docs took for 4 gates (cProfile,
    AMD EPYC), about 0.55 s a gate. Jinja reads `environment.bytecode_cache` when it loads a
    template and keys it by template name and source checksum, so the pages are the same."""

    _cache = None

    @classmethod
    def install(cls) -> None:
        if cls._cache is not None:
            return
        from great_expectations.render.view.view import DefaultJinjaView
        from jinja2 import BytecodeCache

        class Memory(BytecodeCache):
            def __init__(self):
                self.code: dict[str, bytes] = {}

            def load_bytecode(self, bucket):
                if bucket.key in self.code:
                    bucket.bytecode_from_string(self.code[bucket.key])

            def dump_bytecode(self, bucket):
                self.code[bucket.key] = bucket.bytecode_to_string()

        cls._cache = Memory()
        original = DefaultJinjaView.__init__

        def init(self, *args, **kwargs):
            original(self, *args, **kwargs)
            self.env.bytecode_cache = cls._cache

        DefaultJinjaView.__init__ = init


def _context(docs_dir: Path | None):
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # GE's ephemeral default adds a Data Docs site in a new temporary folder that is never
    # removed (40 such folders after a day of tests); only our own site is wanted.
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False))
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        _CompiledTemplates.install()
        context.add_data_docs_site("adaptflow", {
            "class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)}})
    return context


def _run(batches: dict[str, tuple[pd.DataFrame, list]], docs_dir: Path | None) -> dict:
    """Validate each named frame against its expectations; Data Docs for all of them."""
    import great_expectations as gx

    context = _context(docs_dir)
    source = context.data_sources.add_pandas("adaptflow")
    results = {}
    for name, (frame, expectations) in batches.items():
        batch_definition = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=f"adaptflow-{name}"))
        for expectation in expectations:
            suite.add_expectation(expectation)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"adaptflow-{name}", data=batch_definition, suite=suite))
        results[name] = definition.run(batch_parameters={"dataframe": frame}, result_format="COMPLETE")
    if docs_dir is not None:
        _escape_stored_values(context)
        context.build_data_docs(site_names=["adaptflow"])
    return results


def _escaped(value):
    import html

    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return value


def _escape_stored_values(context) -> None:
    """Data Docs put a failed expectation's unexpected values (texts, labels: user data) into
    table cells as raw HTML (GX 1.24 escapes its templates' parameters, not these cells): a label
    `<script>...` would run in the reviewer's browser. The stored results that Data Docs render
    get every value escaped; the results returned to the gate (its messages) keep the raw text."""
    store = context.validation_results_store
    for key in store.list_keys():
        suite_result = store.get(key)
        for r in suite_result.results:
            r.result = _escaped(dict(r.result or {}))
        store.set(key, suite_result)


def _shown(value) -> str:
    if isinstance(value, str) and len(value) > 80:
        value = value[:77] + "..."
    return repr(value)


def _examples(frame: pd.DataFrame, result: dict, limit: int, where: Callable[[int], str],
              columns: tuple[str, str]) -> list[str]:
    rows = []
    for i in (result.get("unexpected_index_list") or [])[:limit]:
        row = frame.loc[i]
        cells = [f"{c}={_shown(row.get(c))}" for c in columns if c in frame.columns]
        rows.append(f"{where(i)}: " + ", ".join(cells))
    if not rows and result.get("partial_unexpected_list"):
        rows = [f"value: {_shown(v)}" for v in result["partial_unexpected_list"][:limit]]
    return rows


def _detail(r) -> str:
    kwargs, observed = r.expectation_config.kwargs, r.result.get("observed_value")
    bounds = [f"{k}={kwargs[k]}" for k in ("min_value", "max_value", "mostly") if kwargs.get(k) not in (None, 1)]
    parts = ([f"observed {observed}"] if observed is not None else []) + bounds
    if r.exception_info.get("raised_exception") is True:
        parts.append("could not run: " + str(r.exception_info.get("exception_message", ""))[:200])
    return "; ".join(parts)


def _failures(gate: str, frame: pd.DataFrame, result, limit: int, where, columns,
              column_hints: dict[str, str] | None = None) -> list[Failure]:
    """One Failure per failed expectation; `column_hints`: a hint for one (derived) column that
    says more than its expectation type's (e.g. the model.max_length that would fit)."""
    hints = {**HINTS, **GENERATION_HINTS} if "target" in columns else HINTS
    hints = hints if gate == "raw" else {**hints, **SPLIT_HINTS}
    out = []
    for r in result.results:
        if r.success:
            continue
        column = r.expectation_config.kwargs.get("column")
        out.append(Failure(gate=gate, expectation=r.expectation_config.type,
                           column=DERIVED.get(column, column), unexpected_count=r.result.get("unexpected_count"),
                           examples=_examples(frame, r.result, limit, where, columns), detail=_detail(r),
                           hint=(column_hints or {}).get(column) or hints.get(r.expectation_config.type, "")))
    return out


def _compact(result) -> dict:
    """The GE result without the (possibly huge) value sets and full unexpected lists."""
    out = result.to_json_dict()
    for r in out.get("results", []):
        r.get("expectation_config", {}).get("kwargs", {}).pop("value_set", None)
        for key in ("unexpected_list", "unexpected_index_list", "unexpected_index_query"):
            r.get("result", {}).pop(key, None)
    return json.loads(json.dumps(out, default=str))


# ---------------------------------------------------------------- the raw file


def raw_expectations(frame: pd.DataFrame, c: RawContract) -> tuple[pd.DataFrame, list]:
    """The derived frame and the raw suite. Only columns that exist get value checks, so a
    missing column is one clear failure, not a cascade."""
    import great_expectations as gx

    from tasks.data.source import DECODE_ERROR

    e = gx.expectations
    suite: list = [e.ExpectTableRowCountToBeBetween(min_value=1)]
    second = c.data.target_col or c.data.label_col
    wanted = [c.data.text_col, second, *(x for x in (c.data.split_col, c.data.group_col) if x and x != second)]
    suite += [e.ExpectColumnToExist(column=col) for col in wanted]
    derived = {}
    if DECODE_ERROR in frame.columns:
        if c.data.drop_undecodable:   # dropped, counted and logged by the gate's caller
            frame = frame[frame[DECODE_ERROR].isna()]
        else:
            suite.append(e.ExpectColumnValuesToBeNull(column=DECODE_ERROR))
    if c.data.target_col:
        suite += _text_checks(e, frame, [c.data.text_col, c.data.target_col], c)
    elif c.data.label_col in frame.columns:
        keep, mapped = kept_labels(frame[c.data.label_col], c.data.drop_labels, c.data.label_map)
        frame = frame[keep]
        label = c.data.label_col   # with a label_map, the checks after mapping run on a derived column
        suite.append(e.ExpectColumnValuesToNotBeNull(column=c.data.label_col))
        if c.data.label_map:
            derived["_label"], label = mapped[keep], "_label"
            suite.append(e.ExpectColumnValuesToBeInSet(column=c.data.label_col, value_set=sorted(c.data.label_map)))
        if c.rules.labels:
            suite.append(e.ExpectColumnValuesToBeInSet(column=label, value_set=list(c.rules.labels)))
        suite.append(e.ExpectColumnUniqueValueCountToBeBetween(column=label, min_value=2,
                                                               max_value=c.rules.max_classes))
    if not c.data.target_col:
        suite += _text_checks(e, frame, [c.data.text_col], c)
    if c.data.split_col and c.data.split_col in frame.columns:
        derived["_split"] = frame[c.data.split_col].astype("string").str.strip().str.lower()
        suite += [e.ExpectColumnValuesToNotBeNull(column=c.data.split_col),
                  e.ExpectColumnValuesToBeInSet(column="_split", value_set=sorted(SPLIT_VALUES))]
    return frame.assign(**derived), suite


def _text_checks(e, frame: pd.DataFrame, columns: list[str], c: RawContract) -> list:
    """Not null and not blank (unless such rows are dropped), within the character bounds."""
    out = []
    for col in (x for x in columns if x in frame.columns):
        if not c.data.drop_empty_texts:
            out += [e.ExpectColumnValuesToNotBeNull(column=col),
                    e.ExpectColumnValuesToNotMatchRegex(column=col, regex=r"^\s*$")]
        if c.rules.text_max_chars or not c.data.drop_empty_texts:
            out.append(e.ExpectColumnValueLengthsToBeBetween(
                column=col, min_value=None if c.data.drop_empty_texts else c.rules.text_min_chars,
                max_value=c.rules.text_max_chars))
    return out


def validate_raw(frame: pd.DataFrame, c: RawContract, fmt: str, problems: list[ReadProblem] = (),
                 docs_dir: Path | None = None, delimiter_hint: str | None = None) -> ValidationReport:
    """Gate 1, on the file as ingested. Reading problems (bytes that do not decode, text that
    does not parse) are failures of their own: no expectation can run on such a file."""
    if problems:
        failures = [Failure("raw", p.check, None, None, [p.message], hint=HINTS.get(p.check, "")) for p in problems]
        return ValidationReport("raw", False, len(problems), failures, labels=list(c.rules.labels))
    checked, suite = raw_expectations(frame, c)
    result = _run({"raw": (checked, suite)}, docs_dir)["raw"]
    where = lambda i: line_of(fmt, int(i))
    shown = (c.data.text_col, c.data.target_col or c.data.label_col, "file")
    failures = _failures("raw", checked, result, c.rules.example_rows, where, shown)
    if delimiter_hint and any(f.expectation == "expect_column_to_exist" for f in failures):
        failures = [Failure("raw", f.expectation, f.column, f.unexpected_count, f.examples, f.detail,
                            delimiter_hint) if f.expectation == "expect_column_to_exist" else f for f in failures]
    labels, inferred = list(c.rules.labels), False
    label = "_label" if "_label" in checked.columns else c.data.label_col
    if not labels and label in checked.columns and not c.data.target_col:
        labels, inferred = sorted(str(x) for x in checked[label].dropna().unique()), True
    failures += _label_name_failures(labels, c)
    return ValidationReport("raw", not failures, result.statistics["evaluated_expectations"], failures,
                            {"raw": _compact(result)}, labels, inferred, docs_dir)


def _short(name: str) -> str:
    """A label as the message shows it: a 229-character name would fill the line (its length is said)."""
    return repr(name if len(name) <= 60 else name[:40] + "...")


def _label_name_failures(labels: list[str], c: RawContract) -> list[Failure]:
    """Label names end up in metric names (`test_precision_<label>`) and registry tag keys
    (`metric.test_precision_<label>`): one MLflow refuses would fail every strategy after it
    trained, or the registration after all of them, so it fails the gate instead."""
    from tasks.tracking import longest_label, unloggable_labels

    bad = unloggable_labels(labels)
    if not bad:
        return []
    examples = [f"label {_short(name)}: {why}" for name, why in list(bad.items())[:c.rules.example_rows]]
    return [Failure("raw", "label names MLflow can log", c.data.label_col, None, examples,
                    hint=f"rename these labels with data.label_map (e.g. '4+ stars': '4plus stars'); metric "
                         f"names allow letters, digits, _ - . / : and spaces, and a label at most "
                         f"{longest_label()} characters")]


# ---------------------------------------------------------------- the splits


def _shared_with(values: dict[str, pd.Series], split: str) -> pd.Series:
    """For each row of `split`: the first other split holding the same value, else null."""
    out = pd.Series(pd.NA, index=values[split].index, dtype="object")
    for other, series in values.items():
        if other != split:
            hit = values[split].isin(set(series.dropna())) & out.isna() & values[split].notna()
            out[hit] = other
    return out


def split_expectations(frame: pd.DataFrame, c: SplitContract) -> list:
    import great_expectations as gx

    e = gx.expectations
    second = "target" if c.target_tokens else "label"
    # An empty (or too small) split trains or scores nothing: every strategy would fail after its retries.
    suite: list = [e.ExpectTableRowCountToBeBetween(min_value=max(c.min_split_rows, 1))]
    suite += [e.ExpectColumnToExist(column=col) for col in ("text", second, *([c.group_col] if c.group_col else []))
                   if col != second or c.group_col != col]
    for col in ("text", "target") if c.target_tokens else ("text",):
        if col in frame.columns:
            suite += [e.ExpectColumnValuesToNotBeNull(column=col),
                      e.ExpectColumnValuesToNotMatchRegex(column=col, regex=r"^\s*$")]
            if c.rules.text_max_chars:
                suite.append(e.ExpectColumnValueLengthsToBeBetween(column=col, min_value=c.rules.text_min_chars,
                                                                   max_value=c.rules.text_max_chars))
    if "text" in frame.columns:
        suite += [
            # Truncation: a few long texts are normal (logged); many mean max_length is too small.
            e.ExpectColumnValuesToBeBetween(column="_tokens", max_value=c.max_length,
                                            mostly=1 - c.rules.max_share_over_max_length),
            e.ExpectColumnValuesToBeUnique(column="_pair_norm" if c.target_tokens else "_norm"),
            e.ExpectColumnValuesToBeNull(column="_shared_with"),
        ]
    if c.target_tokens and "target" in frame.columns:
        suite.append(e.ExpectColumnValuesToBeBetween(column="_target_tokens", min_value=c.target_tokens[0],
                                                     max_value=c.target_tokens[1]))
    if c.group_col and c.group_col in frame.columns:
        suite.append(e.ExpectColumnValuesToBeNull(column="_group_shared_with"))
    if "label" in frame.columns and not c.target_tokens:
        suite += [
            e.ExpectColumnValuesToNotBeNull(column="label"),
            e.ExpectColumnValuesToBeInSet(column="label", value_set=list(c.rules.labels)),
            e.ExpectColumnDistinctValuesToContainSet(column="label", value_set=list(c.rules.labels)),
            e.ExpectColumnValuesToBeBetween(column="_label_count", min_value=c.rules.min_examples_per_label),
            e.ExpectColumnMaxToBeBetween(column="_label_share", max_value=c.rules.max_class_share),
        ]
    return suite


def covering_length(tokens: list[int], share: float) -> int:
    """The smallest max_length that leaves at most `share` of these examples longer (the gate's
    `mostly` rule: at least 1 - share of them within it)."""
    import math

    ordered = sorted(tokens)
    return int(ordered[max(math.ceil((1 - share) * len(ordered)) - 1, 0)]) if ordered else 0


def max_length_hint(tokens: dict[str, list[int]], c: SplitContract) -> str:
    """The refusal of too many long texts names the model.max_length that covers 95 % of the
    examples of every split (tokens per example, by split; more where max_share_over_max_length
    allows fewer than 5 % over it, so that following it passes the gate), and where to set it."""
    share = min(c.rules.max_share_over_max_length, 0.05)
    fits = max(covering_length(t, share) for t in tokens.values() if t)
    longest = max(max(t) for t in tokens.values() if t)
    where = f"under profiles.{c.profile}.model in params.yaml (a profile's value wins)" if c.profile else "in params.yaml"
    what = "prompt + target" if c.target_tokens else "text"
    return (f"model.max_length: {fits} covers {100 * (1 - share):g} % of these {what}s (now {c.max_length}; the "
            f"longest has {longest} tokens): set it {where}, shorten the texts, or raise "
            f"validation.max_share_over_max_length")


def long_text_warnings(split: str, tokens: list[int], max_length: int, limit: int) -> list[str]:
    """The longest examples over max_length, with how many tokens truncation cuts from each."""
    over = sorted(((t, i) for i, t in enumerate(tokens) if t > max_length), reverse=True)
    if not over:
        return []
    rows = ", ".join(f"row {i} ({t} tokens, {t - max_length} cut)" for t, i in over[:limit])
    return [f"{split}: {len(over)} of {len(tokens)} example(s) exceed model.max_length={max_length} tokens and are "
            f"truncated; longest: {rows}"]


def conflicting_targets(split: str, frame: pd.DataFrame, norm: pd.Series, limit: int) -> list[str]:
    """The same input written with different targets (allowed, but the model cannot get both right)."""
    if "target" not in frame.columns:
        return []
    targets = frame["target"].astype("string").groupby(norm.to_numpy()).nunique()
    inputs = targets[targets > 1]
    if inputs.empty:
        return []
    rows = [str(i) for i in frame.index[norm.isin(set(inputs.index))][:limit]]
    return [f"{split}: {len(inputs)} input(s) appear with different targets (rows {', '.join(rows)}); "
            f"a model cannot match both references"]


def _derived(frame: pd.DataFrame, split: str, c: SplitContract, norms, groups, count_tokens) -> dict:
    derived = {}
    if "text" in frame.columns:
        texts = frame["text"].astype("string").fillna("").tolist()
        if c.target_tokens and "target" in frame.columns:
            totals, target_lengths = count_tokens(texts, frame["target"].astype("string").fillna("").tolist())
            derived.update(_target_tokens=target_lengths,
                           _pair_norm=norms[split] + "\x00" + normalise(frame["target"]).fillna(""))
        else:
            totals = count_tokens(texts)
        derived.update(_norm=norms[split], _tokens=totals, _shared_with=_shared_with(norms, split))
    if split in groups and len(groups) == len(norms):
        derived["_group_shared_with"] = _shared_with(groups, split)
    if "label" in frame.columns:
        counts = frame["label"].map(frame["label"].value_counts())
        derived.update(_label_count=counts, _label_share=counts / max(len(frame), 1))
    return derived


def validate_splits(frames: dict[str, pd.DataFrame], c: SplitContract,
                    count_tokens: Callable[[list[str]], list[int]], docs_dir: Path | None = None
                    ) -> ValidationReport:
    """Gate 2, on each split; duplicates within a split, leakage across splits, balance.
    count_tokens(texts) -> tokens per text; generation: count_tokens(inputs, targets) ->
    (prompt + target tokens, target tokens) per example."""
    frames = {s: f.reset_index(drop=True) for s, f in frames.items()}
    norms = {s: normalise(f["text"]) if "text" in f.columns else pd.Series(dtype="string") for s, f in frames.items()}
    groups = ({s: f[c.group_col].astype("string") for s, f in frames.items() if c.group_col in f.columns}
              if c.group_col else {})
    batches, warnings = {}, []
    for split, frame in frames.items():
        checked = frame.assign(**_derived(frame, split, c, norms, groups, count_tokens))
        batches[split] = (checked, split_expectations(checked, c))
        if "_tokens" in checked.columns:
            warnings += long_text_warnings(split, list(checked["_tokens"]), c.max_length, c.rules.long_rows_logged)
            warnings += conflicting_targets(split, checked, checked["_norm"], c.rules.example_rows)
    results = _run(batches, docs_dir)
    failures, evaluated = [], 0
    tokens = {s: [int(t) for t in b[0]["_tokens"]] for s, b in batches.items() if "_tokens" in b[0].columns}
    hints = {"_shared_with": "the same text in two splits leaks test data into training: a text repeated in the "
                             "file goes with data.drop_duplicate_texts: true (with --data FILE: "
                             "--drop-duplicate-texts); else fix the split column"}
    if any(tokens.values()):
        hints["_tokens"] = max_length_hint(tokens, c)
    for split, result in results.items():
        evaluated += result.statistics["evaluated_expectations"]
        failures += _failures(split, batches[split][0], result, c.rules.example_rows, lambda i: f"row {i}",
                              ("text", "target" if c.target_tokens else "label"), hints)
    return ValidationReport("splits", not failures, evaluated, failures, {s: _compact(r) for s, r in results.items()},
                            list(c.rules.labels), False, docs_dir, warnings)
