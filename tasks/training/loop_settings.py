"""The training loop's settings for one strategy: train.* with the strategy's own overrides, on
the hardware train.device / mixed_precision resolve to."""
from __future__ import annotations

from dataclasses import replace

from tasks.config import TrainSettings
from tasks.training.hardware import Hardware, check_hardware
from tasks.training.loop import LoopConfig


def loop_config(params, cfg: TrainSettings, hardware: Hardware | None = None, **override) -> LoopConfig:
    """The training loop's settings: train.* with the strategy's own epochs, learning rate and
    batch grouping (each strategy's params may override train.epochs / train.group_by_length),
    on `hardware` (default: what train.device / mixed_precision resolve to on this machine)."""
    hardware = hardware or check_hardware(cfg)
    loop = replace(LoopConfig(
        learning_rate=params.learning_rate, epochs=params.epochs or cfg.epochs, batch_size=cfg.batch_size,
        eval_every=cfg.eval_every, patience=cfg.patience, seed=cfg.seed,
        group_by_length=cfg.group_by_length if params.group_by_length is None else params.group_by_length,
        grad_accum_steps=cfg.grad_accum_steps, device=hardware.device, precision=hardware.precision,
        gradient_checkpointing=cfg.gradient_checkpointing), **override)
    return loop if "fused_adamw" in override else replace(loop, fused_adamw=fused_adamw(cfg.adamw, loop.precision))


def fused_adamw(adamw: str, precision: str) -> bool:
    """train.adamw resolved: auto is fused where the loop runs in mixed precision (its results are
    not fp32's anyway, and are checked as one change), foreach in fp32."""
    return adamw == "fused" or (adamw == "auto" and precision != "no")
