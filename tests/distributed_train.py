"""Run by tests/test_training_processes.py, alone or under `accelerate launch` (the command
adaptflow builds for train.processes): train LoRA on a tiny dropout-free BERT and write the
trained weights (main process only).

  python -m distributed_train OUT --batch-size 8 --accum 1 [--epochs 2] [--checkpoint DIR --every N]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def tiny_data(n: int, seed: int):
    from tasks.models.encoding import Encoded

    rng = np.random.default_rng(seed)
    ids = [[1, *rng.integers(5, 100, size=int(rng.integers(3, 14))).tolist(), 2] for _ in range(n)]
    return Encoded(ids, rng.integers(0, 2, size=n))


def tiny_lora():
    """A 2-layer BERT without dropout (so one process and several compute the same function),
    with LoRA adapters; the same weights in every process (seeded)."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    from tasks.training.loop import seed_everything

    seed_everything(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, num_labels=2)
    lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"])
    return get_peft_model(BertForSequenceClassification(config), lora)


def run(out: Path, batch_size: int, accum: int, epochs: int, examples: int, checkpoint_dir: str | None,
        every: int, precision: str = "no"):
    from contextlib import nullcontext

    import torch
    from safetensors.torch import save_file

    from tasks.training.checkpoint import checkpointing
    from tasks.training.loop import LoopConfig, train

    torch.set_num_threads(1)
    model = tiny_lora()
    cfg = LoopConfig(learning_rate=1e-2, epochs=epochs, batch_size=batch_size, eval_every=4, patience=1000, seed=5,
                     group_by_length=True, grad_accum_steps=accum, device="cpu", precision=precision)
    block = checkpointing(Path(checkpoint_dir), every) if checkpoint_dir else nullcontext()
    with block:
        result = train(model, tiny_data(examples, 1), tiny_data(32, 2), cfg, pad_id=0, desc="tiny")
    from accelerate import PartialState

    if PartialState().is_main_process:
        weights = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(weights, str(out))
        out.with_suffix(".json").write_text(json.dumps({"steps": result.steps, "resumed_from": result.resumed_from_step,
                                                        "val_loss": result.val_loss, "seen": result.examples_seen}))
    return model, result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--checkpoint")
    parser.add_argument("--every", type=int, default=4)
    args = parser.parse_args(argv)
    run(Path(args.out), args.batch_size, args.accum, args.epochs, args.examples, args.checkpoint, args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
