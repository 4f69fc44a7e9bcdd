"""One training loop for every trainable strategy: dynamic padding, AdamW with linear warmup
and decay, early stopping on validation loss (the best weights are restored), fixed seeds and
a progress bar. Inside `tasks.training.checkpoint.checkpointing(...)` it checkpoints every N steps and
resumes from the last checkpoint it finds (a process killed mid-training goes on, not from 0)."""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tasks.models.encoding import Encoded, batches
from tasks.training import checkpoint
from tasks.training.checkpoint import TrainingState


@dataclass(frozen=True)
class LoopConfig:
    learning_rate: float
    epochs: int
    batch_size: int
    eval_every: int
    patience: int
    seed: int
    warmup_fraction: float = 0.06
    group_by_length: bool = False    # batches of similar length: less padding (encoding.length_grouped_order)


@dataclass(frozen=True)
class TrainResult:
    steps: int
    best_step: int
    stopped_early: bool
    train_seconds: float
    examples_seen: int
    train_loss: list[tuple[int, float]] = field(default_factory=list)   # (step, mean since last check)
    val_loss: list[tuple[int, float]] = field(default_factory=list)     # (step, validation loss)
    resumed_from_step: int = 0        # > 0: this run went on from a checkpoint taken at that step


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def mean_loss(model: nn.Module, data: Encoded, batch_size: int, pad_id: int) -> float:
    model.eval()
    total, n = 0.0, 0
    for _, inputs, labels in batches(data, batch_size, pad_id):
        logits = model(**inputs).logits
        total += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        n += len(labels)
    return total / max(n, 1)


def train(model: nn.Module, train_data: Encoded, val_data: Encoded, cfg: LoopConfig,
          pad_id: int, desc: str = "train") -> TrainResult:
    seed_everything(cfg.seed)
    optimizer, scheduler, total_steps = _optimizer(model, cfg, len(train_data), desc)
    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc=desc, unit="step", dynamic_ncols=True, mininterval=1.0)
    ckpt = checkpoint.active()
    saver = _Saver(ckpt.for_run(desc), ckpt.every_steps, model, optimizer, scheduler, start) if ckpt else None
    state = _resume(saver, model, optimizer, scheduler, bar, desc)
    resumed_from = state.step
    stopped = _epochs(model, train_data, val_data, cfg, pad_id, optimizer, scheduler, state, bar, saver)
    if not state.val_curve or state.val_curve[-1][0] != state.step:
        _check(model, val_data, cfg, pad_id, state, bar)
    bar.close()
    if state.best_weights is not None:  # restore the weights with the lowest validation loss
        _copy_into(model, state.best_weights)
    model.eval()
    return TrainResult(steps=state.step, best_step=state.best_step, stopped_early=stopped,
                       train_seconds=state.train_seconds + time.perf_counter() - start, examples_seen=state.seen,
                       train_loss=state.train_curve, val_loss=state.val_curve, resumed_from_step=resumed_from)


def _optimizer(model: nn.Module, cfg: LoopConfig, examples: int, desc: str):
    """AdamW over the trainable parameters, linear warmup then decay over every step."""
    from transformers import get_linear_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{desc}: the model has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.01)
    total_steps = math.ceil(examples / cfg.batch_size) * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_fraction * total_steps), total_steps)
    return optimizer, scheduler, total_steps


def _epochs(model, train_data: Encoded, val_data: Encoded, cfg: LoopConfig, pad_id: int, optimizer, scheduler,
            state: TrainingState, bar, saver: "_Saver | None") -> bool:
    """Train from `state` to the last epoch; True when early stopping ended it."""
    model.train()
    first_epoch, skip = state.epoch, state.batch_in_epoch
    for epoch in range(first_epoch, cfg.epochs):
        state.epoch, state.batch_in_epoch = epoch, 0
        # The same seeded order as an interrupted run; the batches it finished are skipped.
        order = batches(train_data, cfg.batch_size, pad_id, shuffle_seed=cfg.seed + epoch,
                        group_by_length=cfg.group_by_length)
        for i, (_, inputs, labels) in enumerate(order):
            if epoch == first_epoch and i < skip:
                continue
            _step(model, inputs, labels, optimizer, scheduler, state)
            state.batch_in_epoch = i + 1
            bar.update(1)
            if state.step % cfg.eval_every == 0 and _check(model, val_data, cfg, pad_id, state, bar):
                return True
            if saver is not None and state.step % saver.every_steps == 0:
                saver.save(state)
    return False


def _step(model: nn.Module, inputs: dict, labels: torch.Tensor, optimizer, scheduler, state: TrainingState) -> None:
    loss = nn.functional.cross_entropy(model(**inputs).logits, labels)
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.seen += len(labels)
    state.running += loss.item()
    state.running_n += 1


def _check(model: nn.Module, val_data: Encoded, cfg: LoopConfig, pad_id: int, state: TrainingState, bar) -> bool:
    """Validation-loss check (early stopping keeps the best weights); True when patience is exhausted."""
    state.train_curve.append((state.step, state.running / max(state.running_n, 1)))
    state.running, state.running_n = 0.0, 0
    loss = mean_loss(model, val_data, cfg.batch_size * 4, pad_id)
    state.val_curve.append((state.step, loss))
    model.train()
    if loss < state.best_loss - 1e-4:
        state.best_loss, state.best_step, state.bad_checks = loss, state.step, 0
        state.best_weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    else:
        state.bad_checks += 1
    bar.set_postfix(train_loss=f"{state.train_curve[-1][1]:.3f}", val_loss=f"{loss:.3f}",
                    best=f"{state.best_loss:.3f}@{state.best_step}")
    return state.bad_checks >= cfg.patience


def _copy_into(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    named = dict(model.named_parameters())
    with torch.no_grad():
        for n, value in weights.items():
            named[n].copy_(value)


@dataclass(frozen=True)
class _Saver:
    """Writes this run's checkpoints (one subfolder per `train()` call)."""
    folder: Path
    every_steps: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    started: float               # perf_counter() when this process began training

    def save(self, state: TrainingState) -> None:
        elapsed = replace(state, train_seconds=state.train_seconds + time.perf_counter() - self.started)
        trainable = {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad}
        checkpoint.save(self.folder, checkpoint.Checkpoint(elapsed, trainable, self.optimizer.state_dict(),
                                                           self.scheduler.state_dict(), checkpoint.rng_state()))


def _resume(saver: _Saver | None, model: nn.Module, optimizer, scheduler, bar, desc: str) -> TrainingState:
    """The state of the last checkpoint, with weights, optimizer, scheduler and random generators
    restored; a fresh state when there is none."""
    saved = checkpoint.load(saver.folder) if saver is not None else None
    if saved is None:
        return TrainingState()
    _copy_into(model, saved.trainable)
    optimizer.load_state_dict(saved.optimizer)
    scheduler.load_state_dict(saved.scheduler)
    checkpoint.set_rng_state(saved.rng)
    bar.update(saved.state.step)
    bar.write(f"{desc}: resumed from the checkpoint at step {saved.state.step} ({saver.folder})")
    return saved.state
