"""Blinded side-by-side human review (issue 29): sessions that sample test inputs and have two
registered versions answer them, the reviewer page that hides which version wrote which output,
the votes (stored beside the outcome store's tables), the verdict's statistics (pure functions in
stats.py) and the promotion gate's decision (gate.py).

May import the shared tasktypes, errors and env, and config, models, strategies, data,
evaluation, artifacts, registry, outcomes and tracking. Nothing imports it but flows/ (the
registry's promote stays below it: the CLI and the promote flow ask the gate first)."""
