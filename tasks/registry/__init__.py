"""Registry: versions in the MLflow Model Registry, the decisions that move aliases (pure),
governance (promote, rollback, audit history) and reviewer approval.
May import: tasks.config, models, strategies, data, evaluation, artifacts (a version's folder and its
loader), training, tracking. Never ops or serving."""
