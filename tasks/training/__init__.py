"""Training: the loop and its checkpoints, running one strategy (compute, then record it in
MLflow), prompt-variant scoring; what a run saves is written with tasks.artifacts.
What it does per task type (prepare, compute, another seed's scores) each task type's module
registers once (run.py: classification; generation.py), as a `TrainingPart` (strategy_run.py).
May import: tasks.config, models, strategies, data, evaluation, artifacts, tracking and the shared
tasktypes, errors, env. Never registry, ops, serving."""
