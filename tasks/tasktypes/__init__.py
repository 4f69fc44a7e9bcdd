"""Task types and metrics, declared once: the lowest package of the house (it imports no other
tasks package, and nothing heavy), so every stage may ask it.

- `registry`: a task type (classification, generation) says what it needs and measures (its
  answer column, its base, its metrics, its report columns, its serving route and schema, what
  feedback means for it). Stage packages register their own part for a task type
  (`register_part`), the way strategies register themselves, and look it up with `part`; no code
  outside this package compares a task's name (tests/test_layering.py counts).
- `metrics`: the metric catalogue: every metric's name, split, direction, label, format and
  whether it can be selected on or budgeted. Record, report, CLI table, selection, budgets and
  docs read it.

May import: nothing of tasks (the standard library only)."""
# ruff: noqa: I001
from tasks.tasktypes.metrics import Metric, catalogue, lookup  # noqa: F401
from tasks.tasktypes.registry import DEFAULT, TaskType, names, part, register, register_part, task_type  # noqa: F401
# The task types, in the order `--task` lists them; adding one = one module + one line here.
from tasks.tasktypes import classification  # noqa: F401
from tasks.tasktypes import generation  # noqa: F401
