"""Evaluation: predictions, quality metrics and statistics, cost (size, speed, memory),
forgetting, choosing among strategies (budgets, recommendation), the run record and the report.
May import: tasks.config, tasks.models, tasks.tracking. Never strategies, training, registry, ops, serving."""
