"""Operations: how the pipeline runs (fan-out over strategies, process isolation, retries and
failure records, tracking-server checks, retraining decisions, local servers). Settings: `ops:`.
May import any stage package below it. Never tasks.serving or flows."""
