"""One training loop for every trainable strategy: dynamic padding, AdamW with linear warmup
and decay, early stopping on validation loss (the best weights are restored), fixed seeds and
a progress bar. Inside `tasks.checkpoint.checkpointing(...)` it checkpoints every N steps and
resumes from the last checkpoint it finds (a process killed mid-training goes on, not from 0)."""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tasks import checkpoint
from tasks.encoding import Encoded, batches


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


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total): trainable is exactly what the optimizer updates, head included."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


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
    from transformers import get_linear_schedule_with_warmup

    seed_everything(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{desc}: the model has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(train_data) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(cfg.warmup_fraction * total_steps), total_steps)

    best_loss, best_step, best_state, bad_checks = math.inf, 0, None, 0
    train_curve, val_curve = [], []
    running, running_n, step, seen, stopped = 0.0, 0, 0, 0, False
    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc=desc, unit="step", dynamic_ncols=True, mininterval=1.0)
    ckpt = checkpoint.active()
    ckpt_dir = ckpt.for_run(desc) if ckpt else None
    saved = checkpoint.load(ckpt_dir) if ckpt_dir else None
    start_epoch, skip, resumed_from, earlier_seconds = 0, 0, 0, 0.0
    if saved is not None:
        named = dict(model.named_parameters())
        with torch.no_grad():
            for n, value in saved["trainable"].items():
                named[n].copy_(value)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        (best_loss, best_step, best_state, bad_checks, train_curve, val_curve, running, running_n, step,
         seen) = (saved[k] for k in ("best_loss", "best_step", "best_state", "bad_checks", "train_curve",
                                     "val_curve", "running", "running_n", "step", "seen"))
        start_epoch, skip, earlier_seconds = saved["epoch"], saved["batch_in_epoch"], saved["train_seconds"]
        checkpoint.set_rng_state(saved["rng"])
        resumed_from = step
        bar.update(step)
        bar.write(f"{desc}: resumed from the checkpoint at step {step} ({ckpt_dir})")

    def save(epoch: int, batch_in_epoch: int) -> None:
        checkpoint.save(ckpt_dir, {
            "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "seen": seen,
            "trainable": {n: p.detach() for n, p in model.named_parameters() if p.requires_grad},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "best_loss": best_loss, "best_step": best_step, "best_state": best_state, "bad_checks": bad_checks,
            "train_curve": train_curve, "val_curve": val_curve, "running": running, "running_n": running_n,
            "rng": checkpoint.rng_state(), "train_seconds": earlier_seconds + time.perf_counter() - start})

    def check() -> bool:
        """Validation-loss check; returns True when patience is exhausted."""
        nonlocal best_loss, best_step, best_state, bad_checks, running, running_n
        train_curve.append((step, running / max(running_n, 1)))
        running, running_n = 0.0, 0
        loss = mean_loss(model, val_data, cfg.batch_size * 4, pad_id)
        val_curve.append((step, loss))
        model.train()
        if loss < best_loss - 1e-4:
            best_loss, best_step, bad_checks = loss, step, 0
            best_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        else:
            bad_checks += 1
        bar.set_postfix(train_loss=f"{train_curve[-1][1]:.3f}", val_loss=f"{loss:.3f}",
                        best=f"{best_loss:.3f}@{best_step}")
        return bad_checks >= cfg.patience

    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        # The same seeded order as the interrupted run; the batches it finished are skipped.
        for i, (_, inputs, labels) in enumerate(batches(train_data, cfg.batch_size, pad_id, shuffle_seed=cfg.seed + epoch,
                                                        group_by_length=cfg.group_by_length)):
            if epoch == start_epoch and i < skip:
                continue
            loss = nn.functional.cross_entropy(model(**inputs).logits, labels)
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seen += len(labels)
            running += loss.item()
            running_n += 1
            bar.update(1)
            if step % cfg.eval_every == 0 and check():
                stopped = True
                break
            if ckpt_dir is not None and step % ckpt.every_steps == 0:
                save(epoch, i + 1)
        if stopped:
            break
    if not val_curve or val_curve[-1][0] != step:
        check()
    bar.close()
    if best_state is not None:  # restore the weights with the lowest validation loss
        named = dict(model.named_parameters())
        with torch.no_grad():
            for n, value in best_state.items():
                named[n].copy_(value)
    model.eval()
    return TrainResult(steps=step, best_step=best_step, stopped_early=stopped,
                       train_seconds=earlier_seconds + time.perf_counter() - start, examples_seen=seen,
                       train_loss=train_curve, val_loss=val_curve, resumed_from_step=resumed_from)
