"""The task-type contract and its registrar (one declaration per task type, in
tasks/tasktypes/classification.py and generation.py), plus the parts each stage registers for a
task type: `register_part("generation", "training", ...)` in tasks/training, looked up with
`part(task, "training")`. A stage never asks which task it is; it asks the task type."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

# What a user's correction of a served answer is for this task type (POST /feedback):
# a label from the label set, or a corrected output and/or a rating.
Feedback = Literal["label", "corrected_output"]
# How feedback judges the answer it is about, for the feedback-quality retrain trigger
# (tasks/release/feedback_quality.py): `agreement`, 1 when the label given is the label shown, else
# 0; `rating`, a 1..5 rating scaled to 0..1 ((rating - 1) / 4). Feedback that does not judge (an
# abstained answer, a correction without a rating) is not counted.
FeedbackQuality = Literal["agreement", "rating"]

_NAME = re.compile(r"^[a-z][a-z_]{2,39}$")


@dataclass(frozen=True, kw_only=True)
class TaskType:
    name: str
    summary: str
    # The prepared splits' column the model learns (`label` or `target`), and the data setting
    # that names it in the user's file (data.label_col / data.target_col).
    answer_column: str
    answer_setting: str
    # A label set (label ids, a classification head) or free text.
    has_labels: bool
    # Answers are generated text (greedy decoding through the chat template), not class scores.
    generates: bool
    # The base it needs: "any" Hugging Face model with a sequence-classification class, or a
    # causal LM (a language-model head), checked before a run starts.
    base_kind: Literal["any", "causal_lm"]
    # The base a run uses when model.base is `auto` (the default): a packaged model name
    # (tasks/models/packaged.py; a test checks it is one), so each task type runs as shipped.
    default_base: str
    # Where its strategies' params live in params.yaml: `strategies` or `generation.strategies`.
    strategies_section: str
    # The metric the report ranks by and plots (catalogue name, test split), the default
    # selection metric (`select_metric: auto`), and the other metrics a run may select on.
    quality: str
    selectable: tuple[str, ...]
    # The paired test against the best strategy on the same test examples: its logged name.
    paired_metric: str
    # The scores whose spread over evaluation.seeds a run logs (catalogue keys).
    seed_keys: tuple[str, ...]
    # The CLI's comparison table and the report's comparison table: catalogue keys in column order,
    # with the names people read where they differ from the catalogue's label (`val ` + label for
    # a validation key).
    table: tuple[str, ...]
    report_columns: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    # Serving: the route that answers it, and the request and response bodies (JSON Schema).
    route: str
    request_schema: dict[str, Any] = field(default_factory=dict)
    response_schema: dict[str, Any] = field(default_factory=dict)
    # What user feedback on a served answer carries, and the POST /feedback body (JSON Schema,
    # feedback_schema()): the label must be one of the answering version's labels.
    feedback: Feedback = "label"
    feedback_body: dict[str, Any] = field(default_factory=dict)
    feedback_quality: FeedbackQuality = "agreement"
    # The live signals a canary of this task type is judged on (tasks/tasktypes/signals.py).
    live_signals: tuple[str, ...] = ("error", "slow", "policy_blocked")
    # The example input and output of the logged model's signature.
    signature_example: tuple[dict[str, list], dict[str, list]] = ({}, {})

    @property
    def select_auto(self) -> str:
        return self.selectable[0]


def request_schema(**extra: dict) -> dict[str, Any]:
    """A serving request body (JSON Schema): the model, the texts, an alias or a version number,
    optionally the client's key (a canary split is sticky by it), plus a task type's own fields."""
    return {"type": "object", "required": ["model", "texts"], "additionalProperties": False,
            "properties": {"model": {"type": "string"}, "texts": {"type": "array", "items": {"type": "string"}},
                           "alias": {"type": "string"}, "version": {"type": ["integer", "string"]},
                           "client": {"type": "string"}, **extra}}


def feedback_schema(required: list[str], any_of: list[str] | None = None, **extra: dict) -> dict[str, Any]:
    """A POST /feedback body (JSON Schema): the answer's request id, which of its texts (item,
    default 0), optionally the client's key, plus what a task type's feedback carries (`any_of`:
    at least one of these fields)."""
    schema = {"type": "object", "required": ["request_id", *required], "additionalProperties": False,
              "properties": {"request_id": {"type": "string", "maxLength": 32},
                             "item": {"type": "integer", "minimum": 0}, "client": {"type": "string"}, **extra}}
    if any_of:
        schema["anyOf"] = [{"required": [name]} for name in any_of]
    return schema


def response_schema(answers: str, item: dict, **extra: dict) -> dict[str, Any]:
    """A serving answer (JSON Schema): which version of which model answered (`alias` "canary" when
    the canary split chose it), the request's id, and one item per text."""
    return {"type": "object", "required": ["model", "version", "alias", "strategy", "request_id", answers],
            "properties": {"model": {"type": "string"}, "version": {"type": "string"},
                           "alias": {"type": ["string", "null"]}, "strategy": {"type": "string"},
                           "request_id": {"type": "string"},
                           answers: {"type": "array", "items": item}, **extra}}


_TYPES: dict[str, TaskType] = {}
_PARTS: dict[tuple[str, str], Any] = {}
DEFAULT = "classification"   # the task a params file without `task:` runs


def register(task: TaskType) -> TaskType:
    if not _NAME.match(task.name):
        raise ValueError(f"bad task type name {task.name!r}: use lower_snake_case, 3-40 chars")
    if task.name in _TYPES:
        raise ValueError(f"task type {task.name!r} is registered twice")
    _TYPES[task.name] = task
    return task


def task_type(name: str) -> TaskType:
    """The task type `name`; an unknown name names the registered ones."""
    if name not in _TYPES:
        raise KeyError(f"unknown task type {name!r}; registered: {', '.join(_TYPES)}")
    return _TYPES[name]


def names() -> tuple[str, ...]:
    return tuple(_TYPES)


def register_part(task: str, stage: str, implementation: Any) -> Any:
    """A stage's implementation for a task type (e.g. how training prepares its inputs); one per
    (task, stage)."""
    task_type(task)
    if (task, stage) in _PARTS:
        raise ValueError(f"{stage} registers a part for task type {task!r} twice")
    _PARTS[(task, stage)] = implementation
    return implementation


def part(task: str, stage: str) -> Any:
    """What `stage` registered for `task`; a task type the stage has no part for is a clear error."""
    task_type(task)
    try:
        return _PARTS[(task, stage)]
    except KeyError:
        raise KeyError(f"{stage} has no part for task type {task!r} (registered: "
                       f"{', '.join(t for t, s in _PARTS if s == stage) or 'none'})") from None
