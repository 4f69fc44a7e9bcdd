"""The verdict's statistics, as pure functions over plain lists (no MLflow, no database).

Choices are per judgment, already mapped from the side the reviewer saw to the version's role in
the session: "a" (the version under --a, e.g. @champion), "b" (under --b, the challenger), "tie",
"bad" (both bad). **Ties and both-bad count as half a win for each side**: neither version was
preferred, and dropping them would inflate a win rate built on few decisive votes.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

CHOICES = ("a", "b", "tie", "bad")
Z95 = 1.959963984540054   # the normal quantile of a two-sided 95 % interval


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (successes may be fractional: ties count half).
    (0, 1) for n = 0: nothing is known."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class WinRate:
    """B's win rate over A: (B wins + (ties + both bad) / 2) / judgments, with a Wilson 95 % interval."""

    b_wins: int
    a_wins: int
    ties: int
    both_bad: int
    judgments: int
    rate: float
    lower: float
    upper: float

    def flipped(self) -> "WinRate":
        """A's win rate over B (the same votes seen from the other side)."""
        return WinRate(self.a_wins, self.b_wins, self.ties, self.both_bad, self.judgments,
                       1 - self.rate, 1 - self.upper, 1 - self.lower)


def win_rate(choices: list[str]) -> WinRate:
    counts = Counter(choices)
    unknown = set(counts) - set(CHOICES)
    if unknown:
        raise ValueError(f"unknown choice(s) {sorted(unknown)}; a judgment is one of {CHOICES}")
    n = len(choices)
    score = counts["b"] + 0.5 * (counts["tie"] + counts["bad"])
    lower, upper = wilson(score, n)
    return WinRate(counts["b"], counts["a"], counts["tie"], counts["bad"], n,
                   score / n if n else math.nan, lower, upper)


def cohen_kappa(first: list[str], second: list[str]) -> float:
    """Cohen's kappa of two raters over the same items (in the same order): (po - pe) / (1 - pe).
    1.0 when both always agree on one category (pe = 1); nan with no items."""
    if len(first) != len(second):
        raise ValueError(f"two raters, {len(first)} and {len(second)} ratings: rate the same items")
    n = len(first)
    if n == 0:
        return math.nan
    po = sum(x == y for x, y in zip(first, second)) / n
    c1, c2 = Counter(first), Counter(second)
    pe = sum(c1[k] * c2[k] for k in set(c1) | set(c2)) / (n * n)
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def fleiss_kappa(table: list[list[int]]) -> float:
    """Fleiss' kappa: `table[i][j]` raters who put item i in category j, the same number of
    raters per item (at least two)."""
    if not table:
        return math.nan
    raters = {sum(row) for row in table}
    if len(raters) != 1 or min(raters) < 2:
        raise ValueError(f"Fleiss' kappa needs the same number (>= 2) of raters per item; got {sorted(raters)}")
    m, n = raters.pop(), len(table)
    p_items = [(sum(c * c for c in row) - m) / (m * (m - 1)) for row in table]
    totals = [sum(row[j] for row in table) for j in range(len(table[0]))]
    p_bar, pe = sum(p_items) / n, sum((t / (n * m)) ** 2 for t in totals)
    return 1.0 if pe == 1 else (p_bar - pe) / (1 - pe)


def agreement(ratings: dict[str, dict[str, str]]) -> tuple[str, float, int]:
    """Agreement on the items every reviewer judged: {reviewer: {item: choice}} -> (measure,
    value, items). Cohen's kappa for two reviewers, Fleiss' kappa for more; nan when fewer than
    two reviewers or no shared item."""
    reviewers = sorted(r for r, votes in ratings.items() if votes)
    if len(reviewers) < 2:
        return "none", math.nan, 0
    shared = sorted(set.intersection(*(set(ratings[r]) for r in reviewers)))
    if len(reviewers) == 2:
        first, second = ([ratings[r][i] for i in shared] for r in reviewers)
        return "cohen_kappa", cohen_kappa(first, second), len(shared)
    table = [[sum(ratings[r][i] == c for r in reviewers) for c in CHOICES] for i in shared]
    return "fleiss_kappa", fleiss_kappa(table), len(shared)


def bradley_terry(comparisons: list[tuple[str, str, float]], iterations: int = 1000,
                  tolerance: float = 1e-10, prior: float = 0.1) -> dict[str, float]:
    """Bradley-Terry strengths by Hunter's (2004) MM algorithm: `comparisons` as (i, j, score of i)
    with score 1 (i won), 0 (j won) or 0.5 (tie: half a win each). Strengths are normalised to a
    geometric mean of 1; P(i beats j) = p_i / (p_i + p_j). A player with no win (or no loss) has no
    finite maximum-likelihood strength: every player gets `prior` pseudo-wins and as many pseudo-losses
    against a virtual player of strength 1, which keeps strengths finite and barely moves the
    others (prior=0: the plain maximum-likelihood estimate)."""
    players = sorted({p for i, j, _ in comparisons for p in (i, j)})
    wins = {p: 0.0 for p in players}
    games: Counter = Counter()
    for i, j, s in comparisons:
        if i == j:
            raise ValueError(f"{i} compared with itself")
        wins[i] += s
        wins[j] += 1 - s
        games[frozenset((i, j))] += 1
    p = {k: 1.0 for k in players}
    for _ in range(iterations):
        new = {}
        for k in players:
            denom = sum(n / (p[k] + p[other]) for pair, n in games.items() if k in pair
                        for other in pair - {k}) + 2 * prior / (p[k] + 1.0)
            new[k] = (wins[k] + prior) / denom
        scale = math.exp(sum(math.log(v) for v in new.values()) / len(new)) if new else 1.0
        new = {k: v / scale for k, v in new.items()}
        done = all(abs(new[k] - p[k]) < tolerance for k in players)
        p = new
        if done:
            break
    return p


def bootstrap_bradley_terry(comparisons: list[tuple[str, str, float]], rounds: int = 200,
                            seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """{player: (strength, 2.5 %, 97.5 %)}: percentile intervals over `rounds` resamples of the
    comparisons (with replacement)."""
    point = bradley_terry(comparisons)
    rng = random.Random(seed)
    draws = {k: [] for k in point}
    for _ in range(rounds):
        sample = [comparisons[rng.randrange(len(comparisons))] for _ in comparisons]
        strengths = bradley_terry(sample, iterations=200, tolerance=1e-8)
        for k in point:
            draws[k].append(strengths.get(k, 1.0))
    out = {}
    for k, v in point.items():
        ordered = sorted(draws[k])
        out[k] = (v, ordered[int(0.025 * (rounds - 1))], ordered[int(round(0.975 * (rounds - 1)))])
    return out


def tag_counts(tag_lists: list[list[str]]) -> dict[str, int]:
    """How often each reason tag was given, most frequent first."""
    return dict(Counter(t for tags in tag_lists for t in tags).most_common())


def majority(choices: list[str]) -> str | None:
    """The reviewers' preference on one item: "a", "b" or None (no majority for either side)."""
    score = sum(1 if c == "b" else -1 if c == "a" else 0 for c in choices)
    return "b" if score > 0 else "a" if score < 0 else None


def metric_disagreements(items: dict[str, list[str]], metric: dict[str, tuple[float, float]],
                         limit: int = 10) -> list[tuple[str, str, str]]:
    """Items where the reviewers' majority prefers one version and the automatic metric (per item:
    (score of a, score of b)) the other, as (item, reviewers' pick, metric's pick), the largest
    metric gap first; at most `limit`."""
    found = []
    for item, choices in items.items():
        people = majority(choices)
        if people is None or item not in metric:
            continue
        a, b = metric[item]
        machine = "b" if b > a else "a" if a > b else None
        if machine is not None and machine != people:
            found.append((abs(b - a), item, people, machine))
    return [(item, people, machine) for _, item, people, machine in sorted(found, key=lambda f: (-f[0], f[1]))][:limit]


def runs_test_p(sequence: list[bool]) -> float:
    """Two-sided p-value of the Wald-Wolfowitz runs test: is the order of True/False random?
    (1.0 when one value is missing: nothing to test.)"""
    n1 = sum(sequence)
    n2 = len(sequence) - n1
    if n1 == 0 or n2 == 0:
        return 1.0
    runs = 1 + sum(x != y for x, y in zip(sequence, sequence[1:]))
    n = n1 + n2
    mean = 2 * n1 * n2 / n + 1
    var = 2 * n1 * n2 * (2 * n1 * n2 - n) / (n * n * (n - 1))
    z = (runs - mean) / math.sqrt(var) if var > 0 else 0.0
    return math.erfc(abs(z) / math.sqrt(2))
