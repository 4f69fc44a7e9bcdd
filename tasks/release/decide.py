"""The canary check's decision (pure): roll back, hold, or ready for review, from the counts of
each live signal per arm since the canary started."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tasks.config import CanarySettings
from tasks.release.sequential import RateComparison, compare_rates
from tasks.tasktypes.signals import live_signal

Action = Literal["rollback", "hold", "ready"]


@dataclass(frozen=True)
class SignalCounts:
    """Per-request yes/no counts of one live signal for one arm: `x` of `n` requests."""
    n: int
    x: int


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    tests: dict[str, RateComparison] = field(default_factory=dict)
    canary_requests: int = 0
    champion_requests: int = 0
    minutes: float = 0.0

    def evidence(self) -> dict:
        """What the audit entry, the version's tags and the page record."""
        return {"action": self.action, "reason": self.reason, "canary_requests": self.canary_requests,
                "champion_requests": self.champion_requests, "minutes": round(self.minutes, 2),
                "tests": {name: t.as_dict() for name, t in self.tests.items()}}


def decide(canary: dict[str, SignalCounts], champion: dict[str, SignalCounts], settings: CanarySettings,
           minutes: float, load_failures: list[str] | None = None) -> Decision:
    """`canary`/`champion`: signal name -> counts over the same window (the task type's live
    signals). Each guardrail gets alpha / (number of guardrails), so the chance that an equal
    canary is rolled back on any of them stays under alpha, however often this runs."""
    if load_failures:   # a replica could not load the canary: its traffic went nowhere useful
        return Decision("rollback", f"the canary failed to load: {load_failures[0]}", minutes=minutes)
    alpha = settings.alpha / max(len(canary), 1)
    tests = {name: compare_rates(canary[name].x, canary[name].n, champion[name].x, champion[name].n, alpha,
                                 settings.effect_size) for name in canary}
    n_canary = max((c.n for c in canary.values()), default=0)
    n_champion = max((c.n for c in champion.values()), default=0)
    made = lambda action, reason: Decision(action, reason, tests, n_canary, n_champion, minutes)
    worse = [name for name, t in tests.items() if t.worse]
    if worse and n_canary >= settings.min_requests_rollback:
        return made("rollback", "; ".join(_worse_line(name, tests[name]) for name in worse))
    if n_canary < settings.min_requests_ready or minutes < settings.min_minutes_ready:
        return made("hold", f"{n_canary} canary requests over {minutes:.0f} min; ready needs "
                            f"{settings.min_requests_ready} and {settings.min_minutes_ready:g} min"
                            + (f" (worse so far on {', '.join(worse)}: no rollback before "
                               f"{settings.min_requests_rollback} requests)" if worse else ""))
    unsure = [name for name, t in tests.items() if t.upper > settings.tolerance]
    if unsure:
        return made("hold", "not yet shown within the tolerance of " + f"{settings.tolerance:.1%}: "
                    + ", ".join(f"{live_signal(n).label} upper bound {tests[n].upper:+.1%}" for n in unsure))
    return made("ready", f"every guardrail within {settings.tolerance:.1%} of the champion after {n_canary} canary "
                         f"requests: ready for a reviewer's promotion")


def _worse_line(name: str, t: RateComparison) -> str:
    return (f"{live_signal(name).label}: canary {t.canary_x}/{t.canary_n} vs champion {t.champion_x}/{t.champion_n}, "
            f"difference {t.diff:+.1%} (bounds {t.lower:+.1%}..{t.upper:+.1%} at alpha {t.alpha:.4f}), "
            f"log LR {t.log_lr:.2f} >= {t.boundary:.2f}")
