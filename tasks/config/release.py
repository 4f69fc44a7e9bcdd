"""The `outcomes:` and `canary:` sections of params.yaml: what `adaptflow serve` records about each
answer, and how a canary release is judged (tasks/outcomes and tasks/release act on them)."""
from __future__ import annotations

from dataclasses import dataclass

from tasks.config.schema import require


@dataclass(frozen=True)
class OutcomeSettings:
    # Where serving records one row per answer: a file under the project (SQLite), a database URL
    # every replica shares (postgresql+psycopg2://...), or env:NAME (the production profile).
    store: str = "mlflow/outcomes.db"
    enabled: bool = True
    # Rows older than this are deleted (the canary check reads hours, not months). Days.
    retention_days: float = 14.0
    # A request waits this long for its row to be committed before it is answered; a store that
    # is slower or down never fails a request: the row stays buffered (and is retried) instead.
    write_timeout_ms: float = 500.0
    # Rows kept in memory while the store is unreachable; past it the oldest are dropped (counted
    # in /metrics as adaptflow_outcomes_dropped). 100,000 rows are about 30 MB.
    buffer_rows: int = 100_000
    # Store each answered request's input (and output) texts with its outcome, redacted first by
    # the output policy's personal-data rules. Off by default; POST /feedback needs it on (feedback
    # is only taken on a text this service answered, never on a text the client sends along).
    store_texts: bool = False

    def __post_init__(self):
        require(bool(self.store.strip()), "store must be a file path, a database URL or env:NAME")
        require(self.retention_days > 0, "retention_days must be positive")
        require(self.write_timeout_ms > 0, "write_timeout_ms must be positive")
        require(self.buffer_rows > 0, "buffer_rows must be positive")


@dataclass(frozen=True)
class CanarySettings:
    # The false-rollback rate over the whole canary, however often the check looks (an always-valid
    # mixture sequential test, split over the guardrails: bench/canary.py measures it).
    alpha: float = 0.05
    # The rate difference (canary minus champion) the test is tuned to find fastest: the spread of
    # its normal mixture. 0.05: five points of errors, blocks or abstentions.
    effect_size: float = 0.05
    # No rollback on a guardrail before the canary has answered this many split-routed requests (a
    # broken canary still goes within ~10 requests' worth of traffic after this).
    min_requests_rollback: int = 100
    # "Ready for review": at least this many canary requests and minutes, and every guardrail's
    # upper bound on (canary - champion) at most `tolerance` (two points: a careful team's margin).
    min_requests_ready: int = 1000
    min_minutes_ready: float = 30.0
    tolerance: float = 0.02
    # Ready moves @champion without a reviewer (an audit entry by the pipeline account) only when true.
    auto_promote: bool = False
    # The Prefect deployment canary-check runs on this schedule (every 5 minutes).
    check_cron: str = "*/5 * * * *"

    def __post_init__(self):
        require(0 < self.alpha < 0.5, "alpha must be in (0, 0.5)")
        require(0 < self.effect_size <= 1, "effect_size must be in (0, 1]")
        require(self.min_requests_rollback >= 1 and self.min_requests_ready >= self.min_requests_rollback,
                "min_requests_rollback must be >= 1 and min_requests_ready at least min_requests_rollback")
        require(self.min_minutes_ready >= 0, "min_minutes_ready must be >= 0")
        require(0 <= self.tolerance < 1, "tolerance must be in [0, 1)")
        require(len(self.check_cron.split()) == 5, "check_cron must be a 5-field cron expression")
