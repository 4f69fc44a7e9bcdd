"""Operations: how the pipeline runs (task runners, process isolation, retries, checkpoints,
tracking-server checks, retraining decisions, local servers). Settings: params `ops:`."""
