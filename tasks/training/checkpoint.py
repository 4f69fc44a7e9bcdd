"""Training checkpoints: everything the loop needs to go on from step N as if it had never
stopped. The state is defined once, here (`TrainingState` and `Checkpoint`), and written and
read whole.

Checkpointing is switched on around a strategy run (`with checkpointing(folder, every):`) by
the task that runs it, so strategies and `run_strategy` need not pass a folder through; each
`train()` call inside keeps its own subfolder, named after its description (a learning-curve
retraining is another subfolder). Nothing is written outside that block.
"""
from __future__ import annotations

import math
import os
import random
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

FILE = "checkpoint.pt"


@dataclass
class TrainingState:
    """What the loop carries from step to step (and early stopping between checks)."""
    step: int = 0                    # optimizer steps taken
    epoch: int = 0                   # the epoch in progress
    batch_in_epoch: int = 0          # batches of that epoch already trained on
    seen: int = 0                    # training examples seen
    best_loss: float = math.inf      # lowest validation loss so far, at best_step
    best_step: int = 0
    best_weights: dict[str, torch.Tensor] | None = None   # trainable weights at best_step
    bad_checks: int = 0              # validation checks since the last improvement
    train_curve: list[tuple[int, float]] = field(default_factory=list)   # (step, mean loss since last check)
    val_curve: list[tuple[int, float]] = field(default_factory=list)     # (step, validation loss)
    running: float = 0.0             # training loss summed since the last check
    running_n: int = 0
    train_seconds: float = 0.0       # spent in earlier processes (a resumed run adds its own)


@dataclass
class Checkpoint:
    """A checkpoint file's contents: the loop's state, the trainable weights, the optimizer and
    scheduler, and the random generators."""
    state: TrainingState
    trainable: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]


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
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    # Plain numbers and tensors only, so a checkpoint loads with weights_only=True (no unpickling).
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rng_file(folder: Path, process: int) -> Path:
    return folder / f"rng-{process}.pt"


def save_rng(folder: Path, process: int, step: int) -> None:
    """Each process's own random generators (dropout masks differ between processes), with the
    step they belong to; written atomically like the checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    target = _rng_file(folder, process)
    tmp = target.with_name(f".{target.name}.tmp")
    torch.save({"step": step, "rng": rng_state()}, tmp)
    os.replace(tmp, target)


def load_rng(folder: Path, process: int, step: int) -> dict | None:
    """This process's generators saved at `step` (None when missing or from another step: a kill
    between the files, where the main process's generators are the fallback)."""
    path = _rng_file(folder, process)
    if not path.is_file():
        return None
    saved = read_checkpoint(path)
    return saved["rng"] if saved["step"] == step else None


def save(folder: Path, checkpoint: Checkpoint) -> Path:
    """Written to a temporary file and renamed: a kill during the write leaves the previous
    checkpoint intact (a torn file is never read)."""
    folder.mkdir(parents=True, exist_ok=True)
    target, tmp = folder / FILE, folder / f".{FILE}.tmp"
    torch.save({**_shallow(checkpoint), "state": _shallow(checkpoint.state)}, tmp)
    os.replace(tmp, target)
    return target


def _shallow(obj) -> dict:
    """A dataclass's fields as a dict without copying them (dataclasses.asdict deep-copies every
    tensor: ~270 MB more for a MiniLM full fine-tune)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def read_checkpoint(path: Path) -> dict:
    # Tensors, numbers, strings and containers only: nothing in a checkpoint is unpickled as code.
    return torch.load(path, map_location="cpu", weights_only=True)


def load(folder: Path) -> Checkpoint | None:
    path = folder / FILE
    if not path.is_file():
        return None
    raw = read_checkpoint(path)
    return Checkpoint(**{**raw, "state": TrainingState(**raw["state"])})
