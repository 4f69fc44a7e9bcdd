"""Two-sample tests for drift on live inputs (pure numpy/scipy; tasks/release/drift.py runs them
on a window of requests against the training data version's validation split).

- embeddings: maximum mean discrepancy with a Gaussian kernel (bandwidth: the median pairwise
  distance of the pooled sample) and a permutation p-value, (1 + #{perm >= observed}) / (1 + B):
  exact under the null for any B, no distributional assumption about 384-dimensional features;
- text length: the two-sample Kolmogorov-Smirnov test (scipy);
- predicted labels: Pearson's chi-square of the live label counts against the validation
  split's shares (add-one smoothed so a label validation never saw does not divide by zero).

A window drifts when any of the three p-values is under alpha / 3 (Bonferroni): the false-alarm
rate per window stays at most alpha however the three tests correlate.
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
    """MMD² (biased estimate) between samples x (n, d) and y (m, d), with its permutation p-value.
    The p-value cannot go under 1 / (1 + permutations): keep permutations above 3 / alpha for a
    Bonferroni threshold of alpha / 3. Cost: one (n+m)² float32 kernel matrix and one matrix
    product with all permutations at once (bench/drift.py measures it)."""
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
    kernel = np.exp(-distances / np.float32(bandwidth))
    # w = 1/n on x's rows, -1/m on y's: w'Kw = mean K(x,x) + mean K(y,y) - 2 mean K(x,y).
    base = np.where(np.arange(n + m) < n, 1.0 / n, -1.0 / m).astype(np.float32)
    weights = np.stack([base] + [rng.permutation(base) for _ in range(permutations)], axis=1)
    stats = (weights * (kernel @ weights)).sum(0)
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
