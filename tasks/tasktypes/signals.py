"""Live signals: what `adaptflow serve` records about each answer that a canary is judged on
(tasks/release). Each is a per-request yes/no read from one column of the outcome store
(tasks/outcomes), so every signal is a rate the sequential test compares between canary and
champion; a task type lists the ones that mean something for it (TaskType.live_signals)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How a column becomes yes/no: a server error (status >= 500), any count above zero, or a
# latency above the champion's own 95th percentile over the same window (so a canary's "slow"
# rate is about 5 % when it is as fast as the champion).
Rule = Literal["server_error", "any", "above_champion_p95"]


@dataclass(frozen=True, kw_only=True)
class LiveSignal:
    name: str
    label: str
    column: str
    rule: Rule
    doc: str

    def fired(self, value: float, slow_ms: float | None = None) -> bool:
        """Whether a request whose `column` holds `value` shows this signal (`slow_ms`: the
        champion's p95 the slow signal compares with; None: not known yet, never fired)."""
        if self.rule == "server_error":
            return value >= 500
        if self.rule == "any":
            return value > 0
        return slow_ms is not None and value > slow_ms


_SIGNALS = {s.name: s for s in (
    LiveSignal(name="error", label="error rate", column="status", rule="server_error",
               doc="requests answered 5xx (a failed batch, a timeout): the version's fault, not the client's"),
    LiveSignal(name="slow", label="slow rate (over the champion's p95)", column="latency_ms",
               rule="above_champion_p95", doc="requests slower than the champion's 95th percentile latency"),
    LiveSignal(name="policy_blocked", label="policy-block rate", column="blocked", rule="any",
               doc="requests with at least one output the output policy blocked"),
    LiveSignal(name="abstained", label="abstention rate", column="abstained", rule="any",
               doc="classifications with at least one answer under policy.min_confidence"),
)}


def live_signal(name: str) -> LiveSignal:
    return _SIGNALS[name]


def live_signals() -> dict[str, LiveSignal]:
    return dict(_SIGNALS)
