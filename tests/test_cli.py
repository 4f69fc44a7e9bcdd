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


def run_failing_flow(monkeypatch, error: Exception) -> int:
    """`adaptflow run` whose specialize flow (a real Prefect flow, under the test harness) raises `error`."""
    from prefect import flow

    import flows.specialize

    @flow(name="specialize")
    def failing(run: flows.specialize.SpecializeInput):
        raise error

    monkeypatch.setattr(flows.specialize, "specialize", failing)
    return main(["run", "--params", str(ROOT / "params.yaml")])


def test_a_user_error_from_the_flow_is_its_message_and_exit_2(harness, monkeypatch, capsys):
    from tasks.data.contract import DataValidationError

    assert run_failing_flow(monkeypatch, DataValidationError("data validation failed (raw): fix line 8")) == 2
    err = capsys.readouterr().err
    assert "adaptflow run stopped: data validation failed (raw): fix line 8" in err
    assert "Traceback" not in err and "adaptflow run failed" not in err


def test_an_error_outside_the_family_is_reported_as_a_failure_exit_1(harness, monkeypatch, capsys):
    assert run_failing_flow(monkeypatch, KeyError("a bug")) == 1
    err = capsys.readouterr().err
    assert "adaptflow run failed (KeyError): 'a bug'" in err and "Prefect log above has the traceback" in err
    assert "adaptflow run stopped" not in err
