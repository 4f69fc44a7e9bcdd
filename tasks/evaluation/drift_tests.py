"""Two-sample tests for drift on live inputs (pure numpy/scipy; tasks/release/drift.py runs them
on a window of requests against the training data version's validation split).

- embeddings: the unbiased maximum mean discrepancy with a Gaussian kernel (bandwidth: the median
  pairwise distance of the pooled sample) and a permutation p-value, (1 + #{perm >= observed}) /
  (1 + B): exact under the null for any B, no distributional assumption about 384-dimensional
  features; the statistic itself is the effect size a setting can ask for (drift.min_mmd);
- text length: the two-sample Kolmogorov-Smirnov test (scipy);
- predicted labels: Pearson's chi-square of the live label counts against the validation
  split's shares (add-one smoothed so a label validation never saw does not divide by zero).

A window drifts when any of the three p-values is under alpha / 3 (Bonferroni): the false-alarm
rate per window stays at most alpha however the three tests correlate. A test a large window
finds significant can still be a difference nobody needs to retrain for (reviews of other films
than the reference's): tasks/release/drift.py also asks the MMD for a minimum size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SampleTest:
    name: str          # embedding_mmd | length_ks | label_chi2
    statistic: float
    p_value: float


def _sq_distances(z: np.ndarray) -> np.ndarray:
    sq = (z * z).sum(1)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int = 500, seed: int = 0) -> SampleTest:
    """The unbiased MMD² between samples x (n, d) and y (m, d) (k(a, a) terms left out, so two
    samples of one distribution average 0 at any size), with its permutation p-value. The p-value
    cannot go under 1 / (1 + permutations): keep permutations above 3 / alpha for a Bonferroni
    threshold of alpha / 3. Cost: one (n+m)² float32 kernel matrix and one matrix product with
    all permutations at once (bench/drift.py measures it)."""
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"the MMD test needs at least 2 rows in each sample, got {n} and {m}")
    rng = np.random.default_rng(seed)
    distances = _sq_distances(np.concatenate([x, y]))
    # Bandwidth: the median pairwise squared distance, over at most 20,000 random pairs (the full
    # median of (n+m)²/2 pairs costs more than the test and moves the bandwidth by well under 1 %).
    i, j = rng.integers(0, n + m, size=(2, min(20_000, (n + m) ** 2)))
    pairs = distances[i[i != j], j[i != j]]
    bandwidth = float(np.median(pairs[pairs > 0])) if (pairs > 0).any() else 1.0
    kernel = np.exp(-distances / np.float32(bandwidth)).astype(np.float64)
    # Column b of `in_x` marks which rows are "x" in permutation b (column 0: the real split).
    base = np.arange(n + m) < n
    in_x = np.stack([base] + [rng.permutation(base) for _ in range(permutations)], axis=1).astype(np.float64)
    k_in_x = kernel @ in_x
    s_xx = (in_x * k_in_x).sum(0)
    s_xy = ((1 - in_x) * k_in_x).sum(0)
    s_yy = kernel.sum() - s_xx - 2 * s_xy
    trace = np.trace(kernel) / (n + m)   # k(a, a) = 1 for the Gaussian kernel
    stats = ((s_xx - n * trace) / (n * (n - 1)) + (s_yy - m * trace) / (m * (m - 1)) - 2 * s_xy / (n * m))
    observed = float(stats[0])
    exceed = int((stats[1:] >= observed).sum())
    return SampleTest("embedding_mmd", observed, (1 + exceed) / (1 + permutations))


def length_test(live: np.ndarray, reference: np.ndarray) -> SampleTest:
    from scipy.stats import ks_2samp

    result = ks_2samp(np.asarray(live, dtype=float), np.asarray(reference, dtype=float))
    return SampleTest("length_ks", float(result.statistic), float(result.pvalue))


def label_test(live: list[str], reference: list[str]) -> SampleTest:
    """Live predicted labels against the reference's label shares (add-one smoothed)."""
    from scipy.stats import chisquare

    labels = sorted(set(reference) | set(live))
    ref = np.array([reference.count(k) + 1 for k in labels], dtype=float)
    observed = np.array([live.count(k) for k in labels], dtype=float)
    if len(labels) < 2 or observed.sum() == 0:
        return SampleTest("label_chi2", 0.0, 1.0)
    expected = ref / ref.sum() * observed.sum()
    result = chisquare(observed, expected)
    return SampleTest("label_chi2", float(result.statistic), float(result.pvalue))


def drifted(results: list[SampleTest], alpha: float) -> list[SampleTest]:
    """The tests whose p-value is under alpha / len(results) (Bonferroni)."""
    return [r for r in results if r.p_value < alpha / max(len(results), 1)]
