"""One training loop for every trainable strategy, driven by Hugging Face `accelerate`: the same
code on a CPU, one GPU or several processes (one per GPU, or gloo processes on a CPU), with
mixed precision and gradient accumulation. Dynamic padding, AdamW with linear warmup and
decay, early stopping on validation loss (the best weights are restored), fixed seeds and a
progress bar. Inside `tasks.training.checkpoint.checkpointing(...)` it checkpoints every N
optimizer steps and resumes from the last checkpoint it finds (a process killed mid-training
goes on, not from 0)."""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tasks.models.encoding import Encoded, batches
from tasks.training import checkpoint
from tasks.training.checkpoint import TrainingState
from tasks.training.loader import epoch_loader
from tasks.training.losses import forward_loss, loss_count


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
    grad_accum_steps: int = 1        # micro-batches per optimizer step
    device: str = "cpu"              # cpu | cuda (tasks/training/hardware.py resolves train.device)
    precision: str = "no"            # no | bf16 | fp16 (resolved train.mixed_precision)
    gradient_checkpointing: bool = False
    pack: bool = False               # generation: several examples to a row (encoding.collate_packed)
    fused_adamw: bool = False        # AdamW's fused kernel instead of foreach (train.adamw)


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
    precision: str = "no"             # what the steps and validation checks ran in (LoopConfig.precision)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_accelerator(cfg: LoopConfig):
    """The run's Accelerator. accelerate keeps one state per process; a precision other than the
    one it was first made with (tests, a learning curve after a bf16 run) needs that state reset,
    which is safe in a single process and refused where processes share it."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") != cfg.precision:
        if state.get("num_processes", 1) > 1:
            raise RuntimeError("the precision cannot change between trainings of one multi-process run")
        AcceleratorState._reset_state()
    return Accelerator(cpu=cfg.device == "cpu", mixed_precision=cfg.precision,
                       gradient_accumulation_steps=cfg.grad_accum_steps)


@torch.no_grad()
def mean_loss(model: nn.Module, data: Encoded, batch_size: int, pad_id: int, accelerator=None) -> float:
    """Mean cross-entropy over `data` (per example, or per target token for generation: its exp is
    the perplexity). With several processes each takes every n-th batch and the sums are added up
    across processes, so all of them see the same loss (and stop together)."""
    model.eval()
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    device = accelerator.device if accelerator else torch.device("cpu")
    total, n = 0.0, 0
    for i, (_, inputs, labels) in enumerate(batches(data, batch_size, pad_id)):
        if i % world != rank:
            continue
        inputs = {k: v.to(device) for k, v in inputs.items()}
        total += forward_loss(model, model, inputs, labels.to(device), reduction="sum").item()
        n += loss_count(labels)
    if world > 1:
        sums = accelerator.reduce(torch.tensor([total, float(n)], device=device, dtype=torch.float64), "sum")
        total, n = float(sums[0]), int(sums[1])
    return total / max(n, 1)


def train(model: nn.Module, train_data: Encoded, val_data: Encoded, cfg: LoopConfig,
          pad_id: int, desc: str = "train", on_check: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train `model` in place and return what happened. `on_check(step, val_loss)` is called
    after each validation check; it may raise to stop the training (the tuner's pruner does)."""
    seed_everything(cfg.seed)
    acc = make_accelerator(cfg)
    if cfg.gradient_checkpointing:
        _enable_gradient_checkpointing(model, desc)
    optimizer, scheduler, total_steps = make_optimizer(model, cfg, len(train_data), acc.num_processes, desc)
    wrapped, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
    loop = _Loop(acc, wrapped, acc.unwrap_model(wrapped), optimizer, scheduler, cfg, pad_id, val_data, on_check)
    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc=desc, unit="step", dynamic_ncols=True, mininterval=1.0,
               disable=not acc.is_local_main_process)
    ckpt = checkpoint.active()
    saver = _Saver(ckpt.for_run(desc), ckpt.every_steps, loop, start) if ckpt else None
    try:
        state = _resume(saver, loop, bar, desc)
        resumed_from = state.step
        stopped = _epochs(loop, train_data, state, bar, saver)
        if not state.val_curve or state.val_curve[-1][0] != state.step:
            _check(loop, state, bar)
    finally:
        bar.close()
    acc.wait_for_everyone()
    if state.best_weights is not None:  # restore the weights with the lowest validation loss
        _copy_into(loop.model, state.best_weights)
    seen = int(acc.reduce(torch.tensor(state.seen, device=acc.device), "sum")) if acc.num_processes > 1 else state.seen
    # accelerate wrapped the model's own forward in autocast (mixed precision): restored, so that
    # what the run evaluates is what a reloaded version serves (fp32 on a CPU).
    acc.unwrap_model(wrapped, keep_fp32_wrapper=False)
    loop.model.eval()
    return TrainResult(steps=state.step, best_step=state.best_step, stopped_early=stopped,
                       train_seconds=state.train_seconds + time.perf_counter() - start, examples_seen=seen,
                       train_loss=state.train_curve, val_loss=state.val_curve, resumed_from_step=resumed_from,
                       precision=cfg.precision)


@dataclass(frozen=True)
class _Loop:
    """What every step of one `train()` call uses."""
    accelerator: Any
    wrapped: nn.Module           # the model as accelerate prepared it (DDP-wrapped with processes)
    model: nn.Module             # the model itself (the caller's object): evaluation, weights, restore
    optimizer: Any
    scheduler: Any
    cfg: LoopConfig
    pad_id: int
    val_data: Encoded
    on_check: Callable[[int, float], None] | None = None


def make_optimizer(model: nn.Module, cfg: LoopConfig, examples: int, processes: int, desc: str):
    """AdamW over the trainable parameters, linear warmup then decay over every optimizer step of
    the whole run. accelerate steps the schedule once per process for each optimizer step (every
    process saw a batch), so it is sized in optimizer steps x processes; returns the optimizer
    steps each process takes, for the progress bar."""
    from transformers import get_linear_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{desc}: the model has no trainable parameters")
    # fused: one pass over the weights; for full_finetune's 22.7M weights the optimizer step took
    # 18.2 ms against 99 ms with foreach (AMX Xeon, bench/step_profile.py --precision bf16).
    # It rounds differently (prompt_tuning's demo accuracy moved 0.682 -> 0.714, McNemar p = 9.4e-5,
    # AMD EPYC), so fp32 runs keep foreach unless train.adamw says fused (docs/performance.md).
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.01,
                                  **({"fused": True} if cfg.fused_adamw else {}))
    micro_per_process = math.ceil(math.ceil(examples / cfg.batch_size) / processes)
    steps = math.ceil(micro_per_process / cfg.grad_accum_steps) * cfg.epochs
    schedule = steps * processes
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_fraction * schedule), schedule)
    return optimizer, scheduler, steps


def _enable_gradient_checkpointing(model: nn.Module, desc: str) -> None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise ValueError(f"{desc}: train.gradient_checkpointing is set but {type(base).__name__} does not support it")
    # Non-reentrant checkpointing needs no input that requires grad (adapters on a frozen base).
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _epochs(loop: _Loop, train_data: Encoded, state: TrainingState, bar, saver: "_Saver | None") -> bool:
    """Train from `state` to the last epoch; True when early stopping ended it."""
    cfg, acc = loop.cfg, loop.accelerator
    loop.wrapped.train()
    first_epoch, skip = state.epoch, state.batch_in_epoch
    effective = cfg.batch_size * cfg.grad_accum_steps * acc.num_processes
    for epoch in range(first_epoch, cfg.epochs):
        state.epoch, state.batch_in_epoch = epoch, 0
        # The same seeded order as an interrupted run; the micro-batches it finished are skipped.
        loader = acc.prepare(epoch_loader(train_data, loop.pad_id, cfg.batch_size, effective, cfg.seed + epoch,
                                          cfg.group_by_length, cfg.pack))
        if epoch == first_epoch and skip:
            loader, state.batch_in_epoch = acc.skip_first_batches(loader, skip), skip
        for batch in loader:
            stepped = _step(loop, batch, state)
            state.batch_in_epoch += 1
            if not stepped:
                continue
            bar.update(1)
            if state.step % cfg.eval_every == 0 and _check(loop, state, bar):
                return True
            if saver is not None and state.step % saver.every_steps == 0:
                saver.save(state)
    return False


def _step(loop: _Loop, batch: dict, state: TrainingState) -> bool:
    """One micro-batch; True when it completed an optimizer step."""
    acc = loop.accelerator
    labels = batch.pop("labels")
    examples = batch.pop("examples", None)   # packed rows hold more examples than rows
    with acc.accumulate(loop.wrapped):
        loss = forward_loss(loop.wrapped, loop.model, batch, labels)
        acc.backward(loss)
        loop.optimizer.step()
        loop.scheduler.step()
        loop.optimizer.zero_grad(set_to_none=True)
    state.seen += len(labels) if examples is None else int(examples)
    state.running += loss.item()
    state.running_n += 1
    if acc.sync_gradients:
        state.step += 1
    return acc.sync_gradients


def _check(loop: _Loop, state: TrainingState, bar) -> bool:
    """Validation-loss check (early stopping keeps the best weights); True when patience is exhausted."""
    cfg = loop.cfg
    state.train_curve.append((state.step, state.running / max(state.running_n, 1)))
    state.running, state.running_n = 0.0, 0
    loss = mean_loss(loop.model, loop.val_data, cfg.batch_size * 4, loop.pad_id, loop.accelerator)
    state.val_curve.append((state.step, loss))
    loop.wrapped.train()
    if loss < state.best_loss - 1e-4:
        state.best_loss, state.best_step, state.bad_checks = loss, state.step, 0
        state.best_weights = _trainable(loop.model, clone=True)
    else:
        state.bad_checks += 1
    bar.set_postfix(train_loss=f"{state.train_curve[-1][1]:.3f}", val_loss=f"{loss:.3f}",
                    best=f"{state.best_loss:.3f}@{state.best_step}")
    if loop.on_check is not None:
        loop.on_check(state.step, loss)
    return state.bad_checks >= cfg.patience


def _trainable(model: nn.Module, clone: bool = False) -> dict[str, torch.Tensor]:
    return {n: (p.detach().clone() if clone else p.detach()) for n, p in model.named_parameters() if p.requires_grad}


def _copy_into(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    named = dict(model.named_parameters())
    with torch.no_grad():
        for n, value in weights.items():
            named[n].copy_(value)


@dataclass(frozen=True)
class _Saver:
    """Writes this run's checkpoints (one subfolder per `train()` call): the main process writes
    the state, every process its own random generators."""
    folder: Path
    every_steps: int
    loop: _Loop
    started: float               # perf_counter() when this process began training

    def save(self, state: TrainingState) -> None:
        acc = self.loop.accelerator
        checkpoint.save_rng(self.folder, acc.process_index, state.step)
        if acc.is_main_process:
            elapsed = replace(state, train_seconds=state.train_seconds + time.perf_counter() - self.started)
            checkpoint.save(self.folder, checkpoint.Checkpoint(
                elapsed, _trainable(self.loop.model), self.loop.optimizer.state_dict(),
                self.loop.scheduler.state_dict(), checkpoint.rng_state()))
        acc.wait_for_everyone()


def _resume(saver: _Saver | None, loop: _Loop, bar, desc: str) -> TrainingState:
    """The state of the last checkpoint, with weights, optimizer, scheduler and random generators
    restored; a fresh state when there is none."""
    saved = checkpoint.load(saver.folder) if saver is not None else None
    if saved is None:
        return TrainingState()
    _copy_into(loop.model, saved.trainable)
    loop.optimizer.load_state_dict(saved.optimizer)
    loop.scheduler.load_state_dict(saved.scheduler)
    checkpoint.set_rng_state(checkpoint.load_rng(saver.folder, loop.accelerator.process_index, saved.state.step)
                             or saved.rng)
    bar.update(saved.state.step)
    bar.write(f"{desc}: resumed from the checkpoint at step {saved.state.step} ({saver.folder})")
    return saved.state
