"""Drift between two validated versions of the same dataset: warnings, never a gate.

A version's profile (label shares, and text lengths on fixed character bins) is logged with
its validation; the next version of the same `data.source` is compared with it:
- labels: total variation distance, half the sum of absolute share changes (0.1 = a tenth of
  the examples would have to change label to turn one distribution into the other);
- lengths: population stability index over the fixed bins (the usual reading: < 0.1 stable,
  0.1-0.25 moderate, > 0.25 large).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

# Fixed character-length bins (powers of two), so two profiles compare without the raw data.
LENGTH_EDGES = (0, 16, 32, 64, 128, 256, 512, 1024, 2048)
_EPS = 1e-4   # share given to an empty bin: PSI is infinite otherwise


@dataclass(frozen=True)
class DataProfile:
    version: str
    rows: int
    label_shares: dict[str, float]
    length_shares: list[float]        # share of texts per bin [edge_i, edge_i+1), last one open

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DriftWarning:
    measure: str          # label_tvd | length_psi
    value: float
    threshold: float
    message: str


def profile(frames: dict[str, pd.DataFrame], version: str) -> DataProfile:
    """Over all splits together (the dataset, not one split). Generation has no label: its
    shares are empty and only input lengths drift."""
    df = pd.concat([f[[c for c in ("text", "label") if c in f.columns]] for f in frames.values()], ignore_index=True)
    shares = (df["label"].astype("string").value_counts(normalize=True).sort_index() if "label" in df.columns
              else pd.Series(dtype=float))
    lengths = df["text"].astype("string").str.len().fillna(0)
    bins = pd.cut(lengths, [*LENGTH_EDGES, math.inf], right=False, labels=False)
    counts = bins.value_counts().reindex(range(len(LENGTH_EDGES)), fill_value=0)
    return DataProfile(version, len(df), {str(k): round(float(v), 6) for k, v in shares.items()},
                       [round(float(x) / max(len(df), 1), 6) for x in counts])


def label_tvd(a: dict[str, float], b: dict[str, float]) -> float:
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def psi(expected: list[float], actual: list[float]) -> float:
    e = [max(x, _EPS) for x in expected]
    a = [max(x, _EPS) for x in actual]
    return sum((ai - ei) * math.log(ai / ei) for ei, ai in zip(e, a))


def drift(previous: DataProfile, current: DataProfile, max_label_tvd: float, max_length_psi: float
          ) -> list[DriftWarning]:
    out = []
    tvd = label_tvd(previous.label_shares, current.label_shares)
    if tvd > max_label_tvd:
        changes = ", ".join(f"{k} {previous.label_shares.get(k, 0):.1%} -> {current.label_shares.get(k, 0):.1%}"
                            for k in sorted(set(previous.label_shares) | set(current.label_shares)))
        out.append(DriftWarning("label_tvd", round(tvd, 4), max_label_tvd,
                                f"label distribution moved by {tvd:.3f} (total variation; threshold "
                                f"{max_label_tvd}) since data version {previous.version}: {changes}"))
    index = psi(previous.length_shares, current.length_shares)
    if index > max_length_psi:
        out.append(DriftWarning("length_psi", round(index, 4), max_length_psi,
                                f"text length distribution moved: PSI {index:.3f} (threshold {max_length_psi}) "
                                f"since data version {previous.version}"))
    return out
