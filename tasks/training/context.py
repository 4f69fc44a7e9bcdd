"""What every strategy run of one flow run shares, handed whole to each: settings, base, the
validated data, where to log, and the tags that say what ran."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from tasks.config import Settings
from tasks.data.dvc import DataVersion
from tasks.models.base import ResolvedBase


@dataclass(frozen=True, kw_only=True)
class RunContext:
    settings: Settings             # with the label set the raw-data gate settled on
    base: ResolvedBase             # model.base, resolved and fingerprinted
    data: DataVersion              # the DVC version of the splits
    frames: dict[str, pd.DataFrame]   # train / validation / test, as validated
    experiment_id: str
    parent_run_id: str             # the flow run's MLflow run; each strategy is a child of it
    tags: dict[str, str]           # code, params, base and data (tracking.lineage_tags), set on every run
