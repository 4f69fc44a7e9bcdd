"""What serving pays per batch for holding many versions of a strategy on one shared base, measured
on the run's own saved version (the cost model reads these: tasks/evaluation/ownership.py).

`adaptflow serve` puts every version of a sharing strategy (PEFT adapters, `adapters`-library
adapters) on one base and switches the base between batches; LoRA versions may instead share a
pass (mixed batches). Neither cost is in the batch-1 latency a run measures, and both grow with the
versions held. So the saved version is attached FEW and then MANY times to a fresh shared base,
exactly as serving attaches versions (tasks/serving/pool.py), and timed:
- switch_ms: one switch with FEW versions held; switch_ms_per_version: what each further version
  held adds to a switch (a straight line through the two points);
- mixed_ms_per_version (strategies that mix): a pass over MANY test rows, each row by another
  version, minus the same rows by one version, per extra distinct version.
Copies of one version cost what distinct versions cost: the work depends on how many are held and
their shapes, not on their values. Strategies that load a model of their own log nothing (no switch).
"""
from __future__ import annotations

import gc
from pathlib import Path

from tasks.artifacts.predictor import read_version
from tasks.evaluation.cost import mixed_pass_ms, switch_ms
from tasks.models.base import ResolvedBase
from tasks.models.encoding import Encoded
from tasks.strategies.sharing import SharedBase

# 2 and 16 versions: 16 LoRA copies of MiniLM are 5 MB and attach in about a second; the slope
# over 14 versions is what the model extrapolates to 32 or 1,000 tenants.
FEW, MANY = 2, 16


def switching_metrics(folder: Path, base: ResolvedBase, test: Encoded, pad_id: int, generates: bool) -> dict[str, float]:
    """The figures above for the version saved in `folder` (on `base`, already checked: the run
    trained it); {} when its strategy does not share a base."""
    saved = read_version(folder)
    strategy = saved.strategy
    if strategy.saves != "adapter" or strategy.sharing is None:
        return {}
    shared = SharedBase(base=base, head=saved.head, kind=strategy.sharing.kind)
    held = [saved.attach(shared, f"v{i}") for i in range(FEW)]
    few = switch_ms(held)
    held += [saved.attach(shared, f"v{i}") for i in range(FEW, MANY)]
    many = switch_ms(held)
    out = {"switch_ms": few, "switch_ms_per_version": max(0.0, (many - few) / (MANY - FEW))}
    if not generates and strategy.mixes(folder, saved.params):
        same, mixed = mixed_pass_ms(strategy.sharing.forward_mixed, shared.model, test, pad_id,
                                    [v.name for v in held])
        out["mixed_ms_per_version"] = max(0.0, (mixed - same) / (MANY - 1))
    del held, shared
    gc.collect()
    return out
