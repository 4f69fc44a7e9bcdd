"""Evaluation: predictions, quality metrics and statistics, cost (size, speed, memory),
forgetting, choosing among strategies (budgets, recommendation), the run record and the report.
What it does per task type is registered once per type in task_parts.py.
May import: tasks.config, tasks.models, tasks.tracking and the shared tasktypes, errors, env.
Never strategies, training, registry, ops, serving."""
from tasks.evaluation import task_parts  # noqa: F401  (registers evaluation's part of each task type)
