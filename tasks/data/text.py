"""How two texts are compared (duplicates, leakage, feedback on the same input): one rule, used by
the prepare stage, the contract and the feedback merge."""
from __future__ import annotations

import pandas as pd


def normalise(text: pd.Series) -> pd.Series:
    """The form two texts are compared in (duplicates, leakage): lower case, whitespace folded."""
    return text.astype("string").str.lower().str.split().str.join(" ")
