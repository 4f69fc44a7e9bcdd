"""Which rows of a split a limit keeps. A module of its own: the registry step needs the rows
without the batching code's torch (tasks/models/encoding.py)."""
from __future__ import annotations

import numpy as np


def subset_indices(total: int, n: int, seed: int) -> np.ndarray:
    """The rows a limit of n keeps, in order; the same rows wherever the limit is applied."""
    if n <= 0 or n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
