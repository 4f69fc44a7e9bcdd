"""Data: reading the user's table, cleaning and splitting it, the DVC driver and stages, the
Great Expectations gates, drift and lineage, and the Prefect tasks that run them.
May import: tasks.config, tasks.models, tasks.tracking. Never training, evaluation, registry, ops, serving."""
