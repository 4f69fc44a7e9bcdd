from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from tasks.config import SettingsError, load_settings
from tasks.strategies import registry


def write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("profile", [None, "smoke"])
def test_shipped_params_load(profile):
    s = load_settings(ROOT / "params.yaml", profile)
    assert s.strategies and s.root == ROOT
    for name in s.strategies:
        assert isinstance(s.strategy_params[name], registry.get(name).params_cls)   # parsed at load


def test_smoke_profile_overrides_only_what_it_names():
    default, smoke = load_settings(ROOT / "params.yaml"), load_settings(ROOT / "params.yaml", "smoke")
    assert smoke.train.epochs == 1 and smoke.train.max_train_examples > 0
    assert smoke.train.batch_size == default.train.batch_size
    assert smoke.data == default.data   # same data version for every profile
    assert smoke.params_hash() != default.params_hash()


def test_strategies_all_and_unknown():
    assert load_settings(ROOT / "params.yaml", strategies=["all"]).strategies == registry.names("classification")
    with pytest.raises(SettingsError, match="unknown strategy nope; registered: full_finetune"):
        load_settings(ROOT / "params.yaml", strategies=["nope"])


def test_unknown_key_is_named(tmp_path):
    path = write(tmp_path, lambda r: r["train"].update(batchsize=8))
    with pytest.raises(SettingsError, match=r"unknown key\(s\) train.batchsize"):
        load_settings(path)


def test_bad_value_is_named(tmp_path):
    path = write(tmp_path, lambda r: r["strategies"]["lora"].update(r=0))
    with pytest.raises(ValueError, match="strategies.lora: r and alpha must be positive"):
        load_settings(path)


def test_missing_profile_and_file(tmp_path):
    with pytest.raises(SettingsError, match="no profile 'fast'; profiles: smoke"):
        load_settings(ROOT / "params.yaml", "fast")
    with pytest.raises(SettingsError, match="params file not found"):
        load_settings(tmp_path / "nope.yaml")
