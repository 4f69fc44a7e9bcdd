"""The CLI's own behaviour: help texts, the strategy list, and fast, clear setting errors."""
from conftest import ROOT

from flows.cli import main
from tasks.strategies import registry


def test_strategies_lists_every_registered_one_with_defaults(capsys):
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    for name in registry.names():   # every task's
        assert f"\n{name}  [" in f"\n{out}"
    assert "    r: int = 8" in registry.describe_all()


def test_bad_settings_fail_before_any_work(capsys):
    assert main(["run", "--params", str(ROOT / "params.yaml"), "--strategies", "lora,nope"]) == 2
    assert "unknown strategy nope" in capsys.readouterr().err
    assert main(["run", "--params", str(ROOT / "params.yaml"), "--profile", "fast"]) == 2
    assert "no profile 'fast'" in capsys.readouterr().err
