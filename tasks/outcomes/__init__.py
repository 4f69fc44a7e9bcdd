"""The outcome store: one row per served request (which version answered, how, how fast), written
by every `adaptflow serve` replica before it answers, and read by the canary check; with
outcomes.store_texts the request's redacted texts, and user feedback (POST /feedback, read by
fold-feedback). SQLite under the project by default, PostgreSQL in the production profile
(outcomes.store). May import only the shared tasktypes, errors and env, and config."""
