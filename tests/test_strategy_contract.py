"""The strategy contract, run for every registered strategy on a tiny random BERT: it builds,
the loss falls on a fixed batch, it saves only what it should, and it reloads with identical
logits."""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import tasks.strategies as package
from tasks.encoding import collate
from tasks.strategies import registry
from tasks.strategies.registry import Strategy, TrainableParams
from tasks.training import count_parameters, seed_everything

from conftest import LABELS

TEXTS = ["a wonderful, moving film", "dull and far too long", "the best thing this year",
         "a mess from start to finish", "sharp, funny and kind", "i walked out", "pure joy",
         "tedious"]
Y = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])


def _batch(base_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    return collate(tok(TEXTS, truncation=True, max_length=32)["input_ids"], tok.pad_token_id)


def _eval_loss(model, batch) -> float:
    """Loss without dropout, so a fall is the optimizer's doing, not noise."""
    model.eval()
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(**batch).logits, Y).item()


def test_every_strategy_module_is_registered():
    modules = {m.name for m in pkgutil.iter_modules(package.__path__)
               if not m.name.startswith("_") and m.name != "registry"}
    for name in modules:
        importlib.import_module(f"tasks.strategies.{name}")
    assert modules <= set(registry.names()), f"modules without registration: {modules - set(registry.names())}"


def test_registrar_rejects_bad_and_duplicate_names():
    s = registry.get("lora")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(s)
    with pytest.raises(ValueError, match="bad strategy name"):
        registry.register(dataclasses.replace(s, name="Bad-Name"))


def test_bad_strategy_setting_names_the_key():
    with pytest.raises(ValueError, match=r"strategies.lora: unknown setting\(s\) rank"):
        registry.get("lora").parse_params({"rank": 4})
    with pytest.raises(ValueError, match="strategies.lora: .*dropout"):
        registry.get("lora").parse_params({"dropout": 1.5})


@pytest.mark.parametrize("name", registry.names())
def test_strategy_contract(name: str, tiny_bert: Path, tmp_path: Path):
    strategy: Strategy = registry.get(name)
    params = strategy.parse_params({})
    seed_everything(0)
    model = strategy.build(tiny_bert, LABELS, params)
    batch = _batch(tiny_bert)
    trainable, total = count_parameters(model)

    if strategy.trains:
        assert isinstance(params, TrainableParams)
        assert trainable > 0
        head = [n for n, p in model.named_parameters() if p.requires_grad and "classifier" in n]
        assert head, "the classification head must train (and be counted)"
        # A higher rate than the defaults so a tiny random model moves in a few steps.
        lr = max(params.learning_rate, 1e-3)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
        loss_before = _eval_loss(model, batch)
        for _ in range(10):
            model.train()
            torch.nn.functional.cross_entropy(model(**batch).logits, Y).backward()
            opt.step()
            opt.zero_grad()
        loss_after = _eval_loss(model, batch)
        assert loss_after < loss_before - 1e-3, f"{name}: loss did not fall: {loss_before} -> {loss_after}"
    else:
        assert trainable == 0

    model.eval()
    with torch.no_grad():
        before = model(**batch).logits
    out = tmp_path / name
    out.mkdir()
    strategy.save(model, out)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not any(p.suffix == ".bin" for p in files), "weights must be stored as safetensors"
    tensors = {k for p in files if p.suffix == ".safetensors" for k in safe_open(p, "pt").keys()}
    if strategy.saves == "adapter":
        base_keys = [k for k in tensors if "word_embeddings" in k or "attention.self.query.weight" in k
                     and "lora" not in k and "base_layer" not in k]
        assert not base_keys, f"{name}: adapter artifact holds base weights: {base_keys[:3]}"
        assert sum(p.stat().st_size for p in files) < 0.2 * (tiny_bert / "model.safetensors").stat().st_size
    elif strategy.saves == "full_model":
        assert any("word_embeddings" in k for k in tensors)
    else:
        assert not tensors, f"{name}: a config-only strategy saved tensors"

    seed_everything(123)  # a different seed: reloading must not depend on the RNG
    reloaded = strategy.load(tiny_bert, out, LABELS, params)
    with torch.no_grad():
        after = reloaded(**batch).logits
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
