"""Where training runs: the decision (pure), the refusal of hardware that is not there, bf16 on a
CPU, and your own base model folder."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT, env_for_subprocess
from tasks.models.heads import Head
from tasks.config import TrainSettings
from tasks.training.hardware import HardwareError, Machine, choose

CPU_ONLY, ONE_GPU, OLD_GPU = Machine(0, False), Machine(1, True), Machine(2, False)
BINARY = Head.for_task("classification", ["negative", "positive"])


def _random_pairs(n: int = 32):
    """n random token rows (4-15 tokens) with binary labels: enough for a few training steps."""
    import numpy as np

    from tasks.models.encoding import Encoded

    rng = np.random.default_rng(0)
    return Encoded([rng.integers(5, 200, size=int(rng.integers(4, 16))).tolist() for _ in range(n)],
                   rng.integers(0, 2, size=n))


def _flat(model, trainable: bool = False) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad or not trainable])
ADAPTFLOW = str(Path(sys.executable).parent / "adaptflow")


def test_auto_picks_the_gpu_and_its_precision_and_fp32_on_a_cpu():
    assert (choose(TrainSettings(), ONE_GPU).device, choose(TrainSettings(), ONE_GPU).precision) == ("cuda", "bf16")
    assert choose(TrainSettings(), OLD_GPU).precision == "fp16"
    cpu = choose(TrainSettings(), CPU_ONLY)
    assert (cpu.device, cpu.precision) == ("cpu", "no") and "fp32" in cpu.reason
    assert choose(TrainSettings(device="cpu"), ONE_GPU).device == "cpu"
    assert choose(TrainSettings(mixed_precision="bf16"), CPU_ONLY).precision == "bf16"
    both = choose(TrainSettings(batch_size=8, grad_accum_steps=2, processes=2), OLD_GPU)
    assert both.processes == 2 and "effective batch 8 x 2 accumulation x 2 = 32" in both.reason


def test_hardware_that_is_not_there_is_refused_with_what_to_change():
    with pytest.raises(HardwareError, match="no CUDA device.*set train.device: auto or cpu"):
        choose(TrainSettings(device="cuda"), CPU_ONLY)
    with pytest.raises(HardwareError, match="2 processes, one per GPU, but this machine has 1"):
        choose(TrainSettings(processes=2), ONE_GPU)
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        TrainSettings(device="cpu", mixed_precision="fp16")
    with pytest.raises(HardwareError, match="fp16 needs a GPU"):
        choose(TrainSettings(mixed_precision="fp16"), CPU_ONLY)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_adaptflow_run_refuses_cuda_here_before_anything_starts(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["device"] = "cuda"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "--quiet"], cwd=tmp_path, check=True)   # a project folder, as `adaptflow init` makes
    run = subprocess.run([ADAPTFLOW, "run", "--params", str(path)], env=env_for_subprocess(), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "train.device: cuda, but torch finds no CUDA device" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "mlflow").exists()   # refused before the store, the data or Prefect


def test_bf16_trains_on_a_cpu(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from distributed_train import run

    fp32_model, fp32 = run(tmp_path / "fp32.safetensors", 16, 1, 1, 32, None, 4, precision="no")
    bf16_model, bf16 = run(tmp_path / "bf16.safetensors", 16, 1, 1, 32, None, 4, precision="bf16")
    assert bf16.steps == fp32.steps == 2 and all(torch.isfinite(torch.tensor(v)) for _, v in bf16.val_loss)
    # autocast really ran in bf16: the same steps end at (slightly) different weights
    a = torch.cat([p.flatten() for n, p in fp32_model.named_parameters() if p.requires_grad])
    b = torch.cat([p.flatten() for n, p in bf16_model.named_parameters() if p.requires_grad])
    assert 0 < (a - b).abs().max().item() < 1e-2
    assert bf16.precision == "bf16" and fp32.precision == "no"
    # After training the model is evaluated (and saved) as a reloaded version serves it: the
    # autocast wrapper accelerate put on its forward is gone, its outputs are fp32's.
    ids = torch.tensor([[5, 17, 33, 9, 2], [7, 8, 9, 10, 11]])
    assert "_original_forward" not in bf16_model.__dict__
    with torch.no_grad():
        served = type(bf16_model).forward(bf16_model, input_ids=ids).logits
        assert torch.equal(bf16_model(input_ids=ids).logits, served) and served.dtype == torch.float32


def test_your_own_base_folder_names_what_is_missing(tmp_path, tiny_bert):
    from tasks.models.base import BaseModelError, load_base

    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(BaseModelError, match="no config.json"):
        load_base(str(empty))
    (empty / "config.json").write_text((tiny_bert / "config.json").read_text())
    with pytest.raises(BaseModelError, match="no weights.*model.safetensors"):
        load_base(str(empty))
    base = load_base(str(tiny_bert))
    assert base.path == tiny_bert and len(base.fingerprint) == 64


def test_gradient_checkpointing_on_a_causal_lm_trains_to_the_same_weights(tiny_llama):
    from tasks.strategies import registry
    from tasks.training.loop import LoopConfig, seed_everything, train

    lora = registry.get("lora")
    params = lora.parse_params({"target_modules": ["q_proj", "v_proj"], "dropout": 0.0})
    data = _random_pairs()
    weights = []
    for checkpointing in (False, True):
        seed_everything(0)
        model = lora.build(tiny_llama, BINARY, params)
        cfg = LoopConfig(learning_rate=1e-2, epochs=1, batch_size=8, eval_every=100, patience=3, seed=1,
                         gradient_checkpointing=checkpointing)
        train(model, data, data, cfg, pad_id=2, desc="ckpt")
        assert model.get_base_model().is_gradient_checkpointing == checkpointing
        weights.append(_flat(model, trainable=True))
    assert (weights[0] - weights[1]).abs().max().item() < 1e-5


def test_auto_on_a_cpu_takes_bf16_only_where_it_measured_fast_enough():
    slow_bf16, fast_bf16 = Machine(0, False, 0.01), Machine(0, False, 3.2)
    # 0: fp32 whatever the measurement, and the log says what was measured.
    kept = choose(TrainSettings(cpu_bf16_min_speedup=0), fast_bf16)
    assert kept.precision == "no" and "3.20x fp32's here" in kept.reason and "cpu_bf16_min_speedup is 0" in kept.reason
    chosen = choose(TrainSettings(), fast_bf16)   # the default bar, 2
    assert chosen.precision == "bf16" and "at least train.cpu_bf16_min_speedup 2" in chosen.reason
    slow = choose(TrainSettings(cpu_bf16_min_speedup=2.0), slow_bf16)
    assert slow.precision == "no" and "0.01x" in slow.reason and "below train.cpu_bf16_min_speedup 2" in slow.reason
    # Asked for explicitly, bf16 is used without a measurement.
    assert choose(TrainSettings(mixed_precision="bf16"), slow_bf16).precision == "bf16"
    with pytest.raises(ValueError, match="cpu_bf16_min_speedup must be >= 0"):
        TrainSettings(cpu_bf16_min_speedup=-1)


def test_the_cpu_measurement_is_made_once_per_machine_and_cached(tmp_path, monkeypatch):
    from tasks.training import cpu_precision as probe

    first = probe.cpu_precision(tmp_path)
    assert first.fp32_step_seconds > 0 and first.bf16_step_seconds > 0
    assert "1 threads" in first.machine and f"step {probe.TOKENS}x" in first.machine
    monkeypatch.setattr(probe, "measure", lambda: pytest.fail("measured again"))
    assert probe.cpu_precision(tmp_path) == first   # read back, not measured
    # Another torch (or CPU, or probe) is another key: measured again, the first kept.
    monkeypatch.undo()
    monkeypatch.setattr(probe, "torch_version", lambda: "9.9.9+cpu")
    second = probe.cpu_precision(tmp_path)
    cached = json.loads((tmp_path / probe.CACHE_FILE).read_text())
    assert set(cached) == {first.machine, second.machine} and "torch 9.9.9+cpu" in second.machine
    # A damaged cache is measured over, not trusted.
    monkeypatch.undo()
    (tmp_path / probe.CACHE_FILE).write_text("{not json")
    assert probe.cpu_precision(tmp_path).machine == first.machine


def test_the_cpu_measurement_times_one_thread_and_leaves_torchs_threads_as_they_were():
    import torch

    from tasks.training import cpu_precision as probe

    before = torch.get_num_threads()
    result = probe.measure()
    assert torch.get_num_threads() == before and result.machine == probe.machine_key(probe.PROBE_THREADS)


def test_adamw_is_fused_in_mixed_precision_and_foreach_in_fp32_unless_set():
    from tasks.training.loop_settings import fused_adamw

    assert [fused_adamw("auto", p) for p in ("no", "bf16", "fp16")] == [False, True, True]
    assert fused_adamw("fused", "no") and not fused_adamw("foreach", "bf16")
    with pytest.raises(ValueError, match="adamw must be one of auto, fused, foreach, not 'fast'"):
        TrainSettings(adamw="fast")


def test_fused_adamw_trains_to_the_weights_foreach_reaches_up_to_rounding(tiny_bert):
    """The loop builds the kernel train.adamw names; both take the same steps to weights that
    differ by rounding only (and do differ: the fused kernel really ran). Adam divides by the root
    of tiny second moments, so a weight whose gradient is near zero may move a little differently:
    the bound is a share of how far the weights moved."""
    from tasks.strategies import full_finetune
    from tasks.training.loop import LoopConfig, make_optimizer, seed_everything, train

    data = _random_pairs()
    weights = []
    for fused in (False, True):
        seed_everything(0)
        model = full_finetune.build(tiny_bert, BINARY, full_finetune.FullFinetuneParams())
        cfg = LoopConfig(learning_rate=1e-3, epochs=1, batch_size=8, eval_every=100, patience=3, seed=1,
                         fused_adamw=fused)
        assert make_optimizer(model, cfg, 32, 1, "check")[0].defaults["fused"] is (True if fused else None)
        start = _flat(model)
        train(model, data, data, cfg, pad_id=0, desc="adamw")
        weights.append(_flat(model))
    moved = (weights[0] - start).abs().max().item()
    assert 0 < (weights[0] - weights[1]).abs().max().item() < 0.25 * moved
    assert (weights[0] - weights[1]).abs().mean().item() < 1e-3 * moved
