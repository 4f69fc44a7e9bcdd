"""generation.precision: generating on bf16 copies of a model's fp32 weights, restored bit for
bit after; the run's choice is recorded in its version, which then answers in it too."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from test_generation import _generation_model, frames, settings_for

from tasks.config import GenerationSettings
from tasks.evaluation.generate import generate_texts
from tasks.models.loading import load_tokenizer
from tasks.models.precision import weights_in
from tasks.training.hardware import Hardware, evaluation_precision, generation_precision

TEXTS = ["a story about markets", "team wins the cup final after extra time in the rain", "short",
         "the minister says the court rules on the film award today"]


def test_auto_generates_in_bf16_only_where_the_run_trains_in_bf16():
    def on(precision: str) -> Hardware:
        return Hardware("cpu", precision, 1, "")

    assert [generation_precision("auto", on(p))[0] for p in ("bf16", "no", "fp16")] == ["bf16", "fp32", "fp32"]
    assert generation_precision("fp32", on("bf16")) == ("fp32", "as set in generation.precision")
    assert generation_precision("bf16", on("no"))[0] == "bf16"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, not 'fp16'"):
        GenerationSettings(precision="fp16")
    # Passes that only measure a model: a CPU run's training precision; fp32 on a GPU, whose
    # prompted models and forgetting base stay on the CPU.
    assert [evaluation_precision(on(p)) for p in ("bf16", "no")] == ["bf16", "no"]
    assert [evaluation_precision(Hardware("cuda", p, 1, "")) for p in ("bf16", "fp16")] == ["no", "no"]


def test_weights_in_bf16_runs_the_block_in_bf16_and_gives_every_weight_back_bit_for_bit(tiny_llama):
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    before = {n: p.detach().clone() for n, p in lm.named_parameters()}
    seen = []
    lm.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad(), weights_in(lm, "bf16"):
        lm(input_ids=ids)
    with pytest.raises(RuntimeError, match="inside"), weights_in(lm, "bf16"):
        raise RuntimeError("an error inside the block")
    with torch.no_grad():
        lm(input_ids=ids)
    assert seen == [torch.bfloat16, torch.float32]
    for name, p in lm.named_parameters():
        assert p.dtype == torch.float32 and torch.equal(p, before[name]), name
    assert all(b.dtype == torch.float32 for b in lm.buffers() if b.is_floating_point())   # rotary frequencies


def test_a_prompting_model_keeps_a_prefix_cache_per_precision(tiny_llama):
    """zero_shot keeps its prompts' shared start as a key/value cache on the model: a bf16 pass
    needs its own (an fp32 cache fails in attention), and the fp32 one stays as it was."""
    tok = load_tokenizer(tiny_llama)
    model, lm, fmt = _generation_model("zero_shot", tiny_llama)
    fp32 = generate_texts(model, tok, fmt, TEXTS, 256, 8, 2).texts
    bf16 = generate_texts(model, tok, fmt, TEXTS, 256, 8, 2, precision="bf16").texts
    assert generate_texts(model, tok, fmt, TEXTS, 256, 8, 2).texts == fp32
    assert generate_texts(model, tok, fmt, TEXTS, 256, 8, 2, precision="bf16").texts == bf16
    assert sorted(str(d) for d in model._caches) == ["torch.bfloat16", "torch.float32"]
    assert all(p.dtype == torch.float32 for p in lm.parameters())


@pytest.mark.parametrize("name", ["lora", "zero_shot"])
def test_a_run_scored_in_bf16_records_it_and_its_version_answers_alike(name, tiny_llama, tmp_path):
    """generation.precision: bf16 on any CPU (auto picks it only where bf16 is fast): the run's
    test outputs, its manifest and the reloaded version's answers agree; the saved weights are fp32.
    (test_generation.py runs every strategy the same way in the precision auto picks here.)"""
    from tasks.artifacts.predictor import load_predictor, predict
    from tasks.models.base import load_base
    from tasks.strategies import registry
    from tasks.strategies._prompted_lm import frozen_causal_lm
    from tasks.training.run import compute, prepare_inputs, save_outcome

    settings = settings_for(tiny_llama, tmp_path)
    params = registry.get(name, "generation").parse_params({"target_modules": ["q_proj", "v_proj"]}
                                                           if name == "lora" else {})
    settings = replace(settings, strategy_params={name: params},
                       generation=replace(settings.generation, precision="bf16"))
    inputs = prepare_inputs(settings, load_base(str(tiny_llama)), frames(), name)
    outcome = compute(inputs, settings)
    save_outcome(inputs, outcome, settings, tmp_path / "artifact")
    predictor = load_predictor(tmp_path / "artifact")
    assert predictor.manifest.generation_precision == "bf16"
    assert predict(predictor, list(inputs.splits["test"].sources), batch_size=4).outputs == outcome.details.outputs
    assert all(p.dtype == torch.float32 for p in outcome.model.parameters())   # saved and registered as fp32
    # A trained version holds bf16 weights from its load on (it answered in bf16, converting none
    # per pass); a prompting one prompts the process's one frozen LM, which stays fp32 for the others.
    held = {p.dtype for p in predictor.model.parameters()}
    assert held == ({torch.bfloat16} if name == "lora" else {torch.float32})
    shared = frozen_causal_lm(inputs.base.path)
    assert all(p.dtype == torch.float32 for p in shared.parameters())
    assert name == "lora" or predictor.model.lm is shared


def test_a_version_generating_in_bf16_is_served_unmerged_even_where_merging_is_asked():
    from tasks.serving.pool import serving_mode
    from tasks.strategies import registry

    assert serving_mode(registry.get("lora", "generation"), model="m", merged=["m"])[0] == "merged"
    held, note = serving_mode(registry.get("lora", "generation"), model="m", merged=["m"], bf16=True)
    assert held == "shared_peft" and "generates in bf16" in note and "served unmerged" in note


@pytest.mark.parametrize("name", ["lora", "zero_shot"])
def test_a_bf16_run_measures_its_validation_loss_in_bf16(name, tiny_llama, tmp_path):
    """train.mixed_precision bf16 on a CPU: evaluation passes run under the training checks' bf16
    autocast. A trained model's val_perplexity is the kept check's loss, which a fresh pass in that
    precision repeats; a prompting model's is a pass under that autocast, not fp32's."""
    import numpy as np

    from tasks.models.base import load_base
    from tasks.models.precision import autocast_in
    from tasks.strategies import registry
    from tasks.training.loop import mean_loss
    from tasks.training.run import compute, prepare_inputs

    settings = settings_for(tiny_llama, tmp_path)
    params = registry.get(name, "generation").parse_params({"target_modules": ["q_proj", "v_proj"]}
                                                           if name == "lora" else {})
    settings = replace(settings, train=replace(settings.train, mixed_precision="bf16"), strategy_params={name: params})
    inputs = prepare_inputs(settings, load_base(str(tiny_llama)), frames(), name)
    outcome = compute(inputs, settings)
    validation, pad = inputs.splits["validation"], inputs.pad_id
    with autocast_in(outcome.model, "bf16"):
        again = mean_loss(outcome.model, validation, 4 * settings.train.batch_size if name == "lora"
                          else settings.train.batch_size, pad)
    fp32 = mean_loss(outcome.model, validation, settings.train.batch_size, pad)
    if name == "lora":
        assert outcome.training.precision == "bf16"
        kept = dict(outcome.training.val_loss)[outcome.training.best_step]
        assert outcome.metrics["val_perplexity"] == pytest.approx(np.exp(kept), rel=1e-12)
        assert again == pytest.approx(kept, rel=1e-5)
    else:
        assert outcome.metrics["val_perplexity"] == pytest.approx(np.exp(again), rel=1e-6)
    assert abs(again - fp32) > 0   # a bf16 pass is not fp32's
