"""Training: the loop and its checkpoints, running one strategy (compute, then record it in
MLflow), prompt-variant scoring, and the packaged artifact a run saves.
May import: tasks.config, models, strategies, data, evaluation, tracking. Never registry, ops, serving."""
