"""The CLI's own behaviour: options generated from the flows' inputs, help texts, the strategy
list, fast, clear setting errors, and user errors (tasks/errors.py) told apart from bugs."""
import argparse

import pytest
from conftest import ROOT

from flows.cli import _parser, main, run_input
from flows.inputs import DataInput, PromoteInput, RollbackInput, SpecializeInput
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
    # What the CLI prints; Prefect's own log of the flow run (above it, when captured) has its traceback.
    ours = err[err.index("adaptflow run stopped"):]
    assert ours.startswith("adaptflow run stopped: data validation failed (raw): fix line 8\n")
    assert "Traceback" not in ours and "adaptflow run failed" not in err


def test_an_error_outside_the_family_is_reported_as_a_failure_exit_1(harness, monkeypatch, capsys):
    assert run_failing_flow(monkeypatch, KeyError("a bug")) == 1
    err = capsys.readouterr().err
    assert "adaptflow run failed (KeyError): 'a bug'" in err and "Prefect log above has the traceback" in err
    assert "adaptflow run stopped" not in err


def options_of(command: str) -> dict[str, argparse.Action]:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions}


@pytest.mark.parametrize("command, models", [("run", (SpecializeInput, DataInput)), ("promote", (PromoteInput,)),
                                             ("rollback", (RollbackInput,))])
def test_every_field_of_the_flow_input_is_an_option_with_its_description_as_help(command, models):
    options = options_of(command)
    for model in models:
        for name, field in model.model_fields.items():
            if (model, name) == (SpecializeInput, "data"):   # the "your own data" group: DataInput's fields
                continue
            assert name in options, f"{model.__name__}.{name} has no option in `adaptflow {command}`"
            assert field.description in options[name].help.replace("%%", "%"), (name, options[name].help)


def test_run_options_fill_the_flow_form(tmp_path):
    data = tmp_path / "notes.csv"
    data.write_text("report,summary\n")
    args = _parser().parse_args(["run", "--params", str(ROOT / "params.yaml"), "--strategies", "lora, ia3,",
                                 "--task", "generation", "--data", str(data), "--input-col", "report",
                                 "--target-col", "summary", "--labels", "a,b", "--tune", "--tune-trials", "3"])
    run = run_input(args)
    assert run == SpecializeInput(params_file=str(ROOT / "params.yaml"), strategies=["lora", "ia3"], task="generation",
                                  data=DataInput(path=str(data), text_col="report", target_col="summary",
                                                 labels=["a", "b"]),
                                  tune=True, tune_trials=3)
    assert run_input(_parser().parse_args(["run"])) == SpecializeInput()   # the form's defaults


def test_the_tune_override_is_read_as_tune_settings():
    form = run_input(_parser().parse_args(["run", "--params", str(ROOT / "params.yaml"), "--tune",
                                           "--tune-trials", "2"]))
    tune = form.settings().tune
    assert tune.enabled and tune.trials == 2


def test_a_value_the_form_refuses_names_the_option(capsys):
    assert main(["run", "--params", str(ROOT / "params.yaml"), "--tune", "--tune-trials", "0"]) == 2
    assert "adaptflow run: --tune-trials: Input should be greater than or equal to 1" in capsys.readouterr().err
