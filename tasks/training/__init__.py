"""Training: the loop and its checkpoints, running one strategy (compute, then record it in
MLflow), prompt-variant scoring; what a run saves is written with tasks.artifacts.
May import: tasks.config, models, strategies, data, evaluation, artifacts, tracking. Never registry, ops, serving."""
