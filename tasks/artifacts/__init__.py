"""Artifacts: a version's folder, from the moment a run writes it to the moment something answers
with it. One module per job:

  manifest      `adaptflow.json` (what the version is: strategy, params, labels, base and its
                fingerprint, task) and writing a strategy's files beside it
  fetch         a registered version's folder from the registry, refused when it is not
                adaptflow's (`provenance`: decided before anything of it is loaded)
  predictor     the one path from a folder to a predictor (manifest -> strategy -> params ->
                base fingerprint checked -> weights) and the one predict function, used by the
                registry's re-scoring, serving, the pyfunc and tests
  pyfunc        the MLflow pyfunc other tools load a version with (`pyfunc_entry.py` is the file
                MLflow runs), its signature and requirements

May import: tasks.tasktypes, errors, env, config, models, strategies, evaluation, tracking.
Never data, training, registry, ops, serving (they import this package) or flows."""
