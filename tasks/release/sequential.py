"""The canary's sequential test: an always-valid confidence sequence for the difference of two
rates (canary minus champion), from the normal-mixture SPRT (mSPRT; Robbins 1970, Johari,
Pekelis & Walsh 2017, "Always valid inference"). Pure arithmetic, no I/O.

Why not a plain test: a two-proportion z-test at 5 % re-run every five minutes on the growing
data rolls back an equal canary far more often than 5 % of the time (bench/canary.py measures
it: every look is another chance for noise to cross). The mixture likelihood ratio

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 * d^2 / (2 V (V + tau^2)))

(d the observed difference minus the hypothesised one, V its variance, tau the spread of the
mixture over effect sizes) is a martingale under the null, so by Ville's inequality it exceeds
1/alpha with probability at most alpha over *all* looks. Inverting it gives a confidence
sequence: diff +/- radius holds the true difference at every look at once with probability
1 - alpha. A rollback is "the lower bound is above 0"; "ready" is "the upper bound is at most
the tolerance".
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RateComparison:
    """One guardrail at one look: counts per arm, the difference and its always-valid bounds."""
    canary_n: int
    canary_x: int
    champion_n: int
    champion_x: int
    diff: float           # canary rate - champion rate (Laplace-smoothed rates)
    radius: float         # half-width of the confidence sequence at level alpha
    log_lr: float         # log Lambda for "no difference" (the statistic shown against its boundary)
    boundary: float       # log(1/alpha): the statistic crosses it exactly when 0 leaves the sequence
    alpha: float

    @property
    def lower(self) -> float:
        return self.diff - self.radius

    @property
    def upper(self) -> float:
        return self.diff + self.radius

    @property
    def worse(self) -> bool:
        """The canary's rate is higher than the champion's, at the sequence's level."""
        return self.lower > 0

    def as_dict(self) -> dict:
        """What an audit entry, a version tag and the page keep: counts, bounds and statistics, rounded."""
        figures = {"diff": self.diff, "lower": self.lower, "upper": self.upper, "log_lr": self.log_lr,
                   "boundary": self.boundary}
        return {"canary_n": self.canary_n, "canary_x": self.canary_x, "champion_n": self.champion_n,
                "champion_x": self.champion_x, **{k: round(v, 5) for k, v in figures.items()}, "worse": self.worse}


def smoothed_rate(x: int, n: int) -> float:
    """(x + 1) / (n + 2): never exactly 0 or 1, so the variance never vanishes on a run of zeros
    (the first hundred requests of a canary usually have no errors at all)."""
    return (x + 1) / (n + 2)


def compare_rates(canary_x: int, canary_n: int, champion_x: int, champion_n: int, alpha: float,
                  effect_size: float) -> RateComparison:
    """The always-valid comparison of two rates after `canary_n` and `champion_n` requests."""
    if canary_n <= 0 or champion_n <= 0:
        return RateComparison(canary_n, canary_x, champion_n, champion_x, 0.0, math.inf, 0.0,
                              math.log(1 / alpha), alpha)
    pc, pb = smoothed_rate(canary_x, canary_n), smoothed_rate(champion_x, champion_n)
    var = pc * (1 - pc) / canary_n + pb * (1 - pb) / champion_n
    tau2 = effect_size ** 2
    diff = pc - pb
    log_lr = 0.5 * math.log(var / (var + tau2)) + tau2 * diff ** 2 / (2 * var * (var + tau2))
    # {theta : log Lambda(theta) < log(1/alpha)} solved for theta: diff +/- radius.
    radius = math.sqrt(2 * var * (var + tau2) / tau2 * (math.log(1 / alpha) + 0.5 * math.log((var + tau2) / var)))
    return RateComparison(canary_n, canary_x, champion_n, champion_x, diff, radius, log_lr,
                          math.log(1 / alpha), alpha)


def naive_z_worse(canary_x: int, canary_n: int, champion_x: int, champion_n: int, alpha: float) -> bool:
    """The test the sequential one replaces: a one-sided two-proportion z-test at `alpha`, valid
    for one look only (bench/canary.py shows what re-running it every window does)."""
    if canary_n <= 0 or champion_n <= 0:
        return False
    pooled = (canary_x + champion_x) / (canary_n + champion_n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / canary_n + 1 / champion_n))
    if se == 0:
        return False
    z = (canary_x / canary_n - champion_x / champion_n) / se
    return z > _z_quantile(1 - alpha)


def _z_quantile(p: float) -> float:
    """The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)
