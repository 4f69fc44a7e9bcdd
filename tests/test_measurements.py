"""Forgetting on a second task (BBC News topics through a linear probe) on a tiny random BERT,
and the probe itself on data with known answers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import LABELS

from tasks.models.heads import Head
from tasks.evaluation.forgetting import bbc_news, measure_forgetting, probe_accuracy
from tasks.models.loading import load_tokenizer
from tasks.strategies import registry
from tasks.training.loop import seed_everything

PROBE = dict(n_train=100, n_test=50, max_length=32, seed=13)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Base probe accuracies are cached on disk by fingerprint; these tests use a made-up one."""
    monkeypatch.setenv("ADAPTFLOW_CACHE", str(tmp_path / "cache"))


def test_probe_separates_separable_data_and_is_at_chance_on_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    centers = np.eye(3, 8) * 6
    x = centers[y] + rng.normal(size=(600, 8))
    assert probe_accuracy(x[:400], y[:400], x[400:], y[400:]) > 0.98
    noise = rng.normal(size=(600, 8))
    assert probe_accuracy(noise[:400], y[:400], noise[400:], y[400:]) < 0.5   # chance is 1/3


def test_bbc_news_draw_is_reproducible_and_covers_every_topic():
    texts, ids, topics = bbc_news(100, 50, 13)
    assert topics == ("business", "entertainment", "politics", "sports", "tech")
    assert len(texts) == 150 and set(ids) == set(range(5))
    assert bbc_news(100, 50, 13) == (texts, ids, topics)
    with pytest.raises(ValueError, match="exceeds the 2225 BBC News articles"):
        bbc_news(2000, 500, 13)


def _forgetting(tiny_bert: Path, name: str, overrides: dict | None = None):
    strategy = registry.get(name)
    seed_everything(0)
    model = strategy.build(tiny_bert, Head.for_task('classification', LABELS), strategy.parse_params(overrides or {}))
    return model, measure_forgetting(model, tiny_bert, "tiny", Head.for_task('classification', LABELS), load_tokenizer(tiny_bert), **PROBE, precision="no")


def test_an_adapter_that_changes_nothing_forgets_nothing(tiny_bert: Path):
    """LoRA starts with B = 0, so its features are the base's: the delta is exactly 0."""
    _, result = _forgetting(tiny_bert, "lora")
    assert result.delta_points == 0.0
    assert 0.0 <= result.base_probe_accuracy <= 1.0


@pytest.mark.parametrize("name", ["prompt_tuning", "prefix_tuning", "lora_prompt", "full_finetune"])
def test_every_kind_of_adapter_gives_features(tiny_bert: Path, name: str):
    """Prompt tuning adds positions in front of the text; they are left out of the features."""
    import torch

    model, result = _forgetting(tiny_bert, name)
    if name == "full_finetune":   # scramble the weights: the features, and the probe, move
        with torch.no_grad():
            for p in model.bert.encoder.parameters():
                p.add_(torch.randn_like(p) * 0.5)
        result = measure_forgetting(model, tiny_bert, "tiny", Head.for_task('classification', LABELS), load_tokenizer(tiny_bert), **PROBE, precision="no")
        assert result.probe_accuracy != result.base_probe_accuracy
    assert 0.0 <= result.probe_accuracy <= 1.0
    assert -100 <= result.delta_points <= 100


def test_a_bf16_run_probes_its_model_and_the_base_in_bf16_and_keeps_the_base_figure_apart(tiny_bert: Path, tmp_path,
                                                                                           monkeypatch):
    """The probe's features come from the run's evaluation precision (a CPU run's training
    precision: bf16 autocast, 3x faster for SmolLM2 on an AMX CPU), for the base as for the model,
    so an unchanged model still forgets exactly nothing; the base's figure is cached per precision."""
    import torch

    from tasks.evaluation import forgetting

    forgetting.base_probe_accuracy.cache_clear()   # earlier tests measured the same made-up base in this process
    model, fp32 = _forgetting(tiny_bert, "lora")   # B = 0: the base's features
    features, autocast = forgetting.features, []
    monkeypatch.setattr(forgetting, "features", lambda m, *a, **k: autocast.append(
        (m is model, torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))) or features(m, *a, **k))
    bf16 = measure_forgetting(model, tiny_bert, "tiny", Head.for_task('classification', LABELS),
                              load_tokenizer(tiny_bert), **PROBE, precision="bf16")
    # the base's train and test features (measured anew: none cached in bf16), then the model's
    assert autocast == [(False, torch.bfloat16)] * 2 + [(True, torch.bfloat16)] * 2
    assert bf16.delta_points == 0.0 == fp32.delta_points
    stored = {p.name.split("-")[-1] for p in (tmp_path / "cache" / "forgetting").iterdir()}
    assert stored == {"13.json", "bf16.json"}
    assert all(p.dtype == torch.float32 for p in model.parameters())   # autocast: the weights stay fp32
