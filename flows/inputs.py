"""The flows' inputs, declared once: each is the form the Prefect UI renders for its deployment
and, generated from the same fields (flows/options.py), the options of its `adaptflow` command.
A field's description is both the form's hint and the option's `--help` text: write it so it
reads true in both (a list field's description follows "comma-separated" on the command line).

Pydantic only: the CLI builds its parser from these on every command, before anything heavy loads."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

_PARAMS = "params file; its folder holds the local MLflow store, which MLFLOW_TRACKING_URI overrides"
_MODEL = "registered model name (project.registered_model in params)"
_REVIEWER = ("optional: the account you expect to act as. The audit history records the account the MLflow "
             "server signs in (yours on the command line, the flow's from a form; a different name is refused); "
             "on a local store, this name (default: the OS account), marked as not authenticated")
_REASON = "why (kept in the audit history)"


class DataInput(BaseModel):
    """The user's own data file (replaces the dataset described under `data:` in params)."""

    path: str = Field(description="the data file: CSV, TSV, JSONL or Parquet, optionally .gz/.bz2/.xz/.zip (a "
                                  "relative path starts from the current folder on the command line, from the "
                                  "project root in a form)")
    text_col: str | None = Field(None, description="the text column; generation: the input column (default: text)")
    label_col: str | None = Field(None, description="the label column (default: label)")
    target_col: str | None = Field(None, description="generation: the column holding the text to write")
    split_col: str | None = Field(None, description="the file's own split column, values train/validation/test")
    group_col: str | None = Field(None, description="split grouped by this column: no group in two splits")
    labels: list[str] | None = Field(None, description="declared label set (default: inferred and logged)")
    validation_size: float | None = Field(None, gt=0, description="validation rows: below 1 a share of the rows, "
                                                                  "else a count (data.validation_size; default: 0.1)")
    test_size: float | None = Field(None, gt=0, description="test rows: below 1 a share of the rows, else a count "
                                                            "(data.test_size; default: 0.2)")
    # The cleaning rules, off for a new file (the gate reports what they would drop) unless asked for.
    drop_empty_texts: bool | None = Field(None, description="drop rows whose text (or target) is empty, counted "
                                                            "and logged (data.drop_empty_texts)")
    drop_duplicate_texts: bool | None = Field(None, description="drop repeated texts (generation: repeated "
                                                                "input-target pairs), first kept, counted and "
                                                                "logged (data.drop_duplicate_texts)")
    drop_undecodable: bool | None = Field(None, description="drop files not valid in the encoding, counted and "
                                                            "logged (data.drop_undecodable)")


class SpecializeInput(BaseModel):
    """The form a run takes (the Prefect UI renders it; `adaptflow run` fills it from its options)."""

    params_file: str = Field("params.yaml", description="params file; its folder is the project root")
    profile: str | None = Field(None, description="a profile under `profiles:` in the params file, e.g. smoke")
    strategies: list[str] | None = Field(None, description="strategy names, or `all` (default: strategies.run in "
                                                            "params); a trained strategy with `+retrieval` "
                                                            "(lora+retrieval) runs it with each input's nearest "
                                                            "train examples")
    base: str | None = Field(None, description="your own base model: a local Hugging Face model folder, encoder or "
                                               "causal LM (default: model.base in params; a relative path starts "
                                               "from the current folder on the command line, from the project "
                                               "root in a form)")
    task: Literal["classification", "generation"] | None = Field(
        None, description="what the model learns: a label per text, or a text per input (default: task in params; "
                          "the headlines profile is generation)")
    data: DataInput | None = Field(None, description="your own data file (default: data.source in params)")
    model_name: str | None = Field(None, description="the registered model's name (default: "
                                                     "project.registered_model in params; with --data: "
                                                     "<file name>-<task>, e.g. notes-generation)")
    tune: bool = Field(False, description="tune each trained strategy with Optuna on the train and validation "
                                          "splits before its final training (default: tune.enabled in params; "
                                          "tune: in params holds trials, minutes, storage, search spaces)")
    tune_trials: int | None = Field(None, ge=1, description="with tuning: trials per strategy (default: tune.trials "
                                                            "in params)")
    await_approval: bool = Field(False, description="after proposing a challenger, pause until a reviewer approves "
                                                    "or rejects it in the Prefect UI (needs PREFECT_API_URL: a "
                                                    "server the reviewer can reach)")

    def settings(self):
        """The run's effective settings: params, the profile, then this form's choices
        (tasks.config.run_overrides). The CLI checks them before the flow starts; the flow reads them."""
        from tasks.config import load_settings, run_overrides

        overrides = run_overrides(self.data.model_dump() if self.data else None, self.base, self.task,
                                  self.tune, self.tune_trials, self.model_name)
        return load_settings(self.params_file, self.profile, self.strategies, overrides)


class RetrainInput(BaseModel):
    """The scheduled run's parameters (set by `adaptflow deploy`)."""

    params_file: str = Field("params.yaml", description="params file; its folder is the project root")
    profile: str | None = Field(None, description="a profile under `profiles:` in the params file")
    strategies: list[str] | None = Field(None, description="strategies to run; default: strategies.run")
    force: bool = Field(False, description="retrain even when nothing changed")
    trigger: str | None = Field(None, description="why this run was started, when not by its schedule (the drift "
                                                  "check's finding); recorded on the run as retrain.trigger")


class PromoteInput(BaseModel):
    model: str = Field(description=_MODEL)
    version: str | None = Field(None, description="the version number to promote (instead of an alias)")
    from_alias: str | None = Field("challenger", description="promote the version holding this alias, e.g. "
                                                              "challenger")
    reviewer: str | None = Field(None, description=_REVIEWER)
    reason: str = Field(min_length=1, description=_REASON)
    params_file: str = Field("params.yaml", description=_PARAMS)


class RollbackInput(BaseModel):
    model: str = Field(description=_MODEL)
    reviewer: str | None = Field(None, description=_REVIEWER)
    reason: str = Field(min_length=1, description=_REASON)
    params_file: str = Field("params.yaml", description=_PARAMS)


class CanaryStartInput(BaseModel):
    model: str = Field(description=_MODEL)
    version: str = Field(description="the version to release to a share of the traffic (the canary)")
    share: float = Field(0.1, gt=0, lt=1, description="the share of unpinned requests the canary answers, e.g. 0.1")
    reviewer: str | None = Field(None, description=_REVIEWER)
    reason: str = Field(min_length=1, description=_REASON)
    params_file: str = Field("params.yaml", description=_PARAMS)


class CanaryStopInput(BaseModel):
    model: str = Field(description=_MODEL)
    reviewer: str | None = Field(None, description=_REVIEWER)
    reason: str = Field(min_length=1, description=_REASON)
    params_file: str = Field("params.yaml", description=_PARAMS)


class FoldFeedbackInput(BaseModel):
    """fold-feedback's parameters: which model's feedback becomes the next data version."""

    model: str | None = Field(None, description="registered model whose feedback to fold (default: "
                                                "project.registered_model)")
    since_hours: float | None = Field(None, gt=0, description="only feedback of the last this many hours "
                                                              "(default: all stored feedback)")
    params_file: str = Field("params.yaml", description=_PARAMS)
    profile: str | None = Field(None, description="a profile under `profiles:` in the params file")


class DriftCheckInput(BaseModel):
    """drift-check's parameters (set by `adaptflow deploy`)."""

    models: list[str] | None = Field(None, description="registered models whose live inputs to check (default: "
                                                       "project.registered_model)")
    params_file: str = Field("params.yaml", description=_PARAMS)
    profile: str | None = Field(None, description="a profile under `profiles:` in the params file")


class CanaryCheckInput(BaseModel):
    """The scheduled canary check's parameters (set by `adaptflow deploy`)."""

    models: list[str] | None = Field(None, description="registered models whose canary to check (default: "
                                                       "project.registered_model)")
    params_file: str = Field("params.yaml", description=_PARAMS)
    profile: str | None = Field(None, description="a profile under `profiles:` in the params file")


class ReviewCreateInput(BaseModel):
    """A blinded side-by-side review session (docs/reviewing.md)."""

    model: str = Field(description=_MODEL)
    a: str = Field("champion", description="the first version: an alias (champion) or a version number")
    b: str = Field("challenger", description="the version judged against it: an alias (challenger) or a number; "
                                             "the verdict is its win rate over a")
    n: int = Field(60, ge=2, description="items to sample from the test split, stratified (by label; by input "
                                         "length for generation)")
    source: Literal["test", "traffic"] = Field("test", description="where the inputs come from: the test split "
                                                                   "the versions were tested on; traffic is "
                                                                   "refused (stored outcomes never hold texts)")
    reviewers: int = Field(3, ge=1, description="reviewer seats; each signs in on the review page")
    overlap: int = Field(20, ge=0, description="items every reviewer judges (agreement is measured on them); the "
                                               "rest are shared out")
    seed: int = Field(0, description="seeds the sample, the sides and the order each reviewer sees")
    params_file: str = Field("params.yaml", description=_PARAMS)
    profile: str | None = Field(None, description="a profile under `profiles:` in the params file")
