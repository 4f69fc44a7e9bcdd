"""Training checkpoints: everything the loop needs to go on from step N as if it had never
stopped (trainable weights, optimizer and scheduler state, position in the epoch, curves,
early-stopping state, random generators).

Checkpointing is switched on around a strategy run (`with checkpointing(folder, every):`) by
the task that runs it, so strategies and `run_strategy` need not pass a folder through; each
`train()` call inside keeps its own subfolder, named after its description (a learning-curve
retraining is another subfolder). Nothing is written outside that block.
"""
from __future__ import annotations

import os
import random
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

FILE = "checkpoint.pt"


@dataclass(frozen=True)
class Checkpointing:
    folder: Path
    every_steps: int

    def for_run(self, desc: str) -> Path:
        return self.folder / (re.sub(r"[^A-Za-z0-9_.=-]+", "_", desc).strip("_") or "train")


_ACTIVE: ContextVar[Checkpointing | None] = ContextVar("adaptflow_checkpointing", default=None)


@contextmanager
def checkpointing(folder: Path, every_steps: int) -> Iterator[Checkpointing]:
    """Checkpoint every `every_steps` optimizer steps under `folder` while inside the block."""
    if every_steps <= 0:
        raise ValueError("checkpoint every_steps must be positive")
    token = _ACTIVE.set(Checkpointing(Path(folder), every_steps))
    try:
        yield _ACTIVE.get()
    finally:
        _ACTIVE.reset(token)


def active() -> Checkpointing | None:
    return _ACTIVE.get()


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save(folder: Path, state: dict) -> Path:
    """Written to a temporary file and renamed: a kill during the write leaves the previous
    checkpoint intact (a torn file is never read)."""
    folder.mkdir(parents=True, exist_ok=True)
    target, tmp = folder / FILE, folder / f".{FILE}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, target)
    return target


def load(folder: Path) -> dict | None:
    path = folder / FILE
    if not path.is_file():
        return None
    # Our own file (numpy RNG state and Python tuples inside): not a weights-only load.
    return torch.load(path, map_location="cpu", weights_only=False)


def latest_step(folder: Path) -> int:
    """The step of the checkpoint under `folder` (any subfolder), 0 when there is none."""
    steps = [torch.load(p, map_location="cpu", weights_only=False)["step"] for p in Path(folder).rglob(FILE)]
    return max(steps, default=0)
