"""Training checkpoints: a run that goes on from a checkpoint ends with exactly the weights of
a run that never stopped (same order of batches, optimizer, scheduler and random state)."""
from __future__ import annotations

import numpy as np
import torch

from tasks.models.encoding import encode
from tasks.models.loading import load_tokenizer
from conftest import latest_step
from tasks.training.checkpoint import checkpointing
from tasks.training.loop import LoopConfig, seed_everything, train

LABELS = ["negative", "positive"]


def build(tiny_bert):
    from peft import LoraConfig, TaskType, get_peft_model

    from tasks.models.loading import load_classifier

    seed_everything(0)
    return get_peft_model(load_classifier(tiny_bert, LABELS),
                          LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=["query", "value"]))


def data(tiny_bert, n):
    rng = np.random.default_rng(0)
    words = ["good", "bad", "fine", "awful", "great", "dull", "film", "plot"]
    texts = [" ".join(rng.choice(words, size=rng.integers(3, 12))) for _ in range(n)]
    return encode(load_tokenizer(tiny_bert), texts, rng.integers(0, 2, size=n), 32)


def test_resuming_from_a_checkpoint_gives_the_same_weights(tiny_bert, tmp_path):
    train_set, val_set = data(tiny_bert, 96), data(tiny_bert, 32)
    cfg = LoopConfig(learning_rate=1e-3, epochs=2, batch_size=8, eval_every=5, patience=100, seed=3)
    pad = 0

    straight = build(tiny_bert)
    reference = train(straight, train_set, val_set, cfg, pad, desc="lora")   # 24 steps, no checkpoints

    folder = tmp_path / "ckpt"
    with checkpointing(folder, every_steps=7):
        first = train(build(tiny_bert), train_set, val_set, cfg, pad, desc="lora")
    assert first.resumed_from_step == 0 and latest_step(folder) == 21    # checkpoints at 7, 14, 21
    # A new process would build the model again from the base and find the step-21 checkpoint.
    resumed_model = build(tiny_bert)
    with checkpointing(folder, every_steps=7):
        resumed = train(resumed_model, train_set, val_set, cfg, pad, desc="lora")
    assert resumed.resumed_from_step == 21 and resumed.steps == reference.steps == 24
    assert resumed.val_loss == reference.val_loss and resumed.best_step == reference.best_step
    for (n, a), (_, b) in zip(straight.named_parameters(), resumed_model.named_parameters()):
        assert torch.equal(a, b), n


class Payload:
    """Unpickling this touches `marker`: stands for code planted in a shared checkpoint folder."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return Path.touch, (Path(self.marker),)


def test_a_checkpoint_carrying_a_pickled_object_is_refused_and_runs_nothing(tmp_path):
    """Checkpoints load with weights_only=True, so a planted pickle fails to
    load instead of running (the folder is shared by every pod in the Kubernetes setup)."""
    import pickle

    import pytest

    from tasks.training.checkpoint import FILE, load

    marker = tmp_path / "planted-code-ran"
    folder = tmp_path / "ckpt"
    folder.mkdir()
    torch.save({"step": 1, "state": {"step": 1}, "payload": Payload(str(marker))}, folder / FILE)
    with pytest.raises(pickle.UnpicklingError):
        load(folder)
    with pytest.raises(pickle.UnpicklingError):
        latest_step(tmp_path)
    assert not marker.exists()
    torch.load(folder / FILE, weights_only=False)   # the plant is real: unrestricted loading runs it
    assert marker.exists()
