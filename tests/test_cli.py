"""The CLI's own behaviour: help texts, the strategy list, and fast, clear setting errors."""
from conftest import ROOT

from flows.cli import list_strategies, main
from tasks.strategies import registry


def test_strategies_lists_every_registered_one_with_defaults(capsys):
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    for name in registry.names():   # every task's
        assert f"\n{name}  [" in f"\n{out}"
    assert "    r = 8" in list_strategies()


def test_bad_settings_fail_before_any_work(capsys):
    assert main(["run", "--params", str(ROOT / "params.yaml"), "--strategies", "lora,nope"]) == 2
    assert "unknown strategy nope" in capsys.readouterr().err
    assert main(["run", "--params", str(ROOT / "params.yaml"), "--profile", "fast"]) == 2
    assert "no profile 'fast'" in capsys.readouterr().err
