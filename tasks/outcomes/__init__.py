"""The outcome store: one row per served request (which version answered, how, how fast), written
by every `adaptflow serve` replica before it answers, and read by the canary check. SQLite under
the project by default, PostgreSQL in the production profile (outcomes.store). May import only
the shared tasktypes, errors and env, and config."""
