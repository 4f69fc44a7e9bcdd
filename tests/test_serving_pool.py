"""Serving pool on a tiny random BERT: every adapter on a shared base answers exactly as the
same version loaded alone (tasks/artifacts' loader), switching back and forth."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LABELS, ROOT, saved_version

from tasks.artifacts.manifest import Manifest, params_dict
from tasks.artifacts.predictor import load_predictor, predict
from tasks.models.base import load_base
from tasks.models.heads import Head
from tasks.serving.pool import Pool, serving_mode
from tasks.strategies import registry
from tasks.training.loop import seed_everything

TEXTS = ["a gripping, beautifully acted film", "dull and far too long", "fine", "I laughed, I cried"]


def reference(folder: Path) -> np.ndarray:
    return predict(load_predictor(folder), TEXTS).probs


def test_serving_mode_decides_from_what_the_strategy_declares():
    mode = lambda name, merged=(): serving_mode(registry.get(name), model="m", merged=list(merged))
    assert mode("lora") == ("shared_peft", "")
    assert mode("lora", ["m"]) == ("merged", "")
    held, note = mode("prompt_tuning", ["m"])
    assert held == "shared_peft" and "no merge" in note
    assert mode("bottleneck_adapter") == ("shared_adapters", "")
    assert mode("full_finetune", ["m"]) == ("own", "")
    assert mode("zero_shot") == ("own", "")
    # What each registered strategy declares decides it, not a list kept here.
    assert {s.name for s in registry.all_strategies() if s.merge is not None} == {"lora", "ia3"}
    assert {s.name for s in registry.all_strategies() if s.sharing is not None} == {
        "lora", "ia3", "prompt_tuning", "prefix_tuning", "bottleneck_adapter", "lora_prompt", "unipelt"}


def test_serving_knows_no_library_layout():
    """Serving holds versions through the strategy contract only: no private strategy module, no
    library's file (PEFT's adapter_config.json) or tensor names, and nothing of tasks.training."""
    for path in (ROOT / "tasks" / "serving").glob("*.py"):
        source = path.read_text()
        for banned in ("tasks.strategies._", "adapter_config", "safetensors", "tasks.training"):
            assert banned not in source, f"{path.name} mentions {banned}"


# PEFT cannot mix adapter types on one model: LoRA versions share one base, IA3 gets another;
# `adapters`-library types mix on one base; full fine-tunes and prompting load on their own.
@pytest.mark.parametrize("strategies, shared_bases", [
    (("lora", "lora", "ia3"), 2), (("prompt_tuning", "prompt_tuning"), 1),
    (("bottleneck_adapter", "unipelt", "lora_prompt"), 1), (("full_finetune", "zero_shot"), 0)])
def test_shared_base_answers_like_a_version_loaded_alone(tmp_path, tiny_bert, strategies, shared_bases):
    base = load_base(str(tiny_bert))
    folders = [saved_version(tmp_path, base, name, seed) for seed, name in enumerate(strategies)]
    pool = Pool(merged=[], on_inference_thread=lambda fn: fn())
    loaded = [pool.load("m", str(i + 1), f) for i, f in enumerate(folders)]
    # Serving sets eval mode only where a model's root is in train mode (ensure_eval): loading and
    # attaching must leave every module in eval mode, or a new adapter's dropout would stay on.
    assert not [(l.version, n) for l in loaded for n, m in l.attached.model().named_modules() if m.training]
    expected = [reference(f) for f in folders]
    for _ in range(2):   # switch back and forth: each adapter keeps its own weights and head
        for got, want in zip(loaded, expected):
            np.testing.assert_allclose(pool.predict(got, TEXTS, 32), want, atol=1e-5)
    assert not np.allclose(expected[0], expected[1], atol=1e-3)   # the versions do differ
    assert len(pool.groups()) == shared_bases
    pool.unload(loaded[0])
    np.testing.assert_allclose(pool.predict(loaded[1], TEXTS, 32), expected[1], atol=1e-5)


def test_merged_lora_answers_like_the_adapter(tmp_path, tiny_bert):
    base = load_base(str(tiny_bert))
    folder = saved_version(tmp_path, base, "lora", 3)
    pool = Pool(merged=["m"], on_inference_thread=lambda fn: fn())
    loaded = pool.load("m", "1", folder)
    assert loaded.mode == "merged" and loaded.group is None
    np.testing.assert_allclose(pool.predict(loaded, TEXTS, 32), reference(folder), atol=1e-5)


def test_mismatched_base_fingerprint_is_refused(tmp_path, tiny_bert):
    from tasks.models.base import BaseModelError

    base = load_base(str(tiny_bert))
    good = saved_version(tmp_path, base, "lora", 0)
    bad = saved_version(tmp_path, base, "lora", 1, fingerprint="0" * 64)
    pool = Pool(merged=[], on_inference_thread=lambda fn: fn())
    kept = pool.load("m", "1", good)
    with pytest.raises(BaseModelError, match="fingerprint"):
        pool.load("m", "2", bad)
    assert pool.groups() == {kept.group_id: [kept.adapter]}
    np.testing.assert_allclose(pool.predict(kept, TEXTS, 32), reference(good), atol=1e-5)


def test_a_retrieving_version_answers_with_its_own_index_beside_shared_adapters(tmp_path, tiny_bert, monkeypatch):
    """lora+retrieval is held as its own module (its index builds each request's context), while
    plain LoRA versions keep sharing one base; each answers as the version loaded alone."""
    import dataclasses

    import pandas as pd

    from tasks.strategies.with_retrieval import attach_index

    monkeypatch.setenv("ADAPTFLOW_CACHE", str(tmp_path / "cache"))
    base = load_base(str(tiny_bert))
    strategy = registry.get("lora+retrieval")
    train = pd.DataFrame({"text": TEXTS * 2, "label": LABELS * 4})
    params = attach_index(dataclasses.replace(strategy.parse_params({}), k=2, context_tokens=24), train, "label")
    seed_everything(5)
    model = strategy.build(base.path, Head.for_task('classification', LABELS), params)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    folder = tmp_path / "lora-retrieval"
    strategy.save(model, folder)
    Manifest(strategy=strategy.name, params=params_dict(params), labels=LABELS, max_length=32,
             base_name=str(base.path), base_fingerprint=base.fingerprint, saves=strategy.saves).write(folder)
    plain = [saved_version(tmp_path, base, "lora", seed) for seed in (1, 2)]
    pool = Pool(merged=[], on_inference_thread=lambda fn: fn())
    loaded = [pool.load("m", str(i + 1), f) for i, f in enumerate([*plain, folder])]
    assert [x.mode for x in loaded] == ["shared_peft", "shared_peft", "own"] and len(pool.groups()) == 1
    for got, f in zip(loaded, [*plain, folder]):
        np.testing.assert_allclose(pool.predict(got, TEXTS, 32), reference(f), atol=1e-5)
