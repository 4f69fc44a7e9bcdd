"""From outcome rows to the counts the decision reads (pure): per arm, per live signal, the
requests the canary split routed since the canary started, and the same counts over time for
the page."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.outcomes.store import Outcome
from tasks.release.decide import SignalCounts
from tasks.tasktypes import names, task_type
from tasks.tasktypes.signals import live_signal

ARMS = ("champion", "canary")
MIN_FOR_P95 = 20   # champion requests before its p95 means anything; the slow signal waits for them


@dataclass(frozen=True)
class Window:
    canary: dict[str, SignalCounts]
    champion: dict[str, SignalCounts]
    slow_ms: float | None            # the champion's p95 latency: "slow" is above it


def signals_for(rows: list[Outcome]) -> tuple[str, ...]:
    """The live signals of the task type whose route answered these requests."""
    routes = {r.route for r in rows}
    for name in names():
        if task_type(name).route.strip("/") in routes:
            return task_type(name).live_signals
    return ("error", "slow", "policy_blocked")


def champion_p95(rows: list[Outcome]) -> float | None:
    latencies = [r.latency_ms for r in rows if r.arm == "champion"]
    return float(np.percentile(latencies, 95)) if len(latencies) >= MIN_FOR_P95 else None


def flag(row: Outcome, signal: str, slow_ms: float | None) -> bool:
    spec = live_signal(signal)
    return spec.fired(getattr(row, spec.column), slow_ms)


def window(rows: list[Outcome], signals: tuple[str, ...], slow_ms: float | None = None) -> Window:
    """Counts per arm over `rows` (the split-routed requests of one canary). The slow signal
    counts no requests until the champion has MIN_FOR_P95 of its own."""
    slow_ms = champion_p95(rows) if slow_ms is None else slow_ms
    counts = {}
    for arm in ARMS:
        mine = [r for r in rows if r.arm == arm]
        counts[arm] = {s: SignalCounts(0 if (s == "slow" and slow_ms is None) else len(mine),
                                       sum(flag(r, s, slow_ms) for r in mine)) for s in signals}
    return Window(counts["canary"], counts["champion"], slow_ms)


def split_rows(rows: list[Outcome], canary_version: str) -> list[Outcome]:
    """The requests the split routed: the champion arm, and the canary arm on this canary's version."""
    return [r for r in rows if r.routed and (r.arm == "champion" or (r.arm == "canary" and r.version == canary_version))]
