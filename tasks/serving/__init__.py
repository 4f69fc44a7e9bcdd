"""Serving registered versions over HTTP: one base model in memory shared by many adapters,
following the registry's aliases (`adaptflow serve`). One job per module:

  checks     checking a /predict body (pure)
  batching   grouping queued requests by adapter, one inference thread
  pool       holding versions: on shared bases (each strategy's `attach`), own models, merged LoRA/IA3
  follow     where the followed aliases point and what to change when they move (pure)
  service    routes alias -> version, in-flight counts, swaps, refusals, health
  metrics    Prometheus counters and latency histograms
  app        the FastAPI routes
  exposure   what an unknown client may see and do: the host/token rule, per-client load limits,
             /health and /models without internals
  run        start it (uvicorn) from the CLI, or in a thread for tests and the bench

Settings: `serving:` (tasks/config/serving.py). May import: tasks.config, models, strategies (the
contract only, never a private module of it), evaluation, artifacts (a version's folder and its
loader), registry, tracking. Never training, ops or flows.
"""
