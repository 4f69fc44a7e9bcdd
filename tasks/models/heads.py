"""What sits on top of the base for a task: a classification head over the labels, or the
causal LM's own language-model head (task: generation). Strategies build on a `Head`, so a
strategy module is the same for both tasks wherever its method is (PEFT, full fine-tuning)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tasks.tasktypes import task_type


@dataclass(frozen=True)
class Head:
    task: str                      # a registered task type (tasks/tasktypes)
    labels: tuple[str, ...] = ()   # a task type with labels: the label set, in label-id order
    instruction: str = ""          # a task type that generates: the run's instruction (generation.instruction)

    @classmethod
    def for_task(cls, task: str, labels: list[str] | tuple[str, ...] = (), instruction: str = "") -> "Head":
        has_labels = task_type(task).has_labels
        return cls(task, tuple(labels) if has_labels else (), "" if has_labels else instruction)

    def task_text(self) -> str:
        """The task in one sentence, for what starts from text (prompt tuning's virtual tokens):
        classification names its labels; generation is the run's instruction ("" when not given)."""
        if self.generates:
            return self.instruction
        return f"Classify the text as one of: {', '.join(self.labels)}." if self.labels else "Classify the text."

    @property
    def generates(self) -> bool:
        return task_type(self.task).generates

    @property
    def peft_task_type(self) -> str:
        """PEFT's TaskType name: SEQ_CLS saves the new head with the adapter; CAUSAL_LM keeps
        the base's LM head (and prepends prompt tokens to the labels)."""
        return "CAUSAL_LM" if self.generates else "SEQ_CLS"

    def load(self, path: Path):
        """The base (or a saved full model) with this head: a fresh classification head, or the
        causal LM as it is."""
        from tasks.models.loading import load_causal_lm, load_classifier

        return load_causal_lm(path) if self.generates else load_classifier(path, list(self.labels))
