"""adaptflow: run every way to specialize a transformer side by side, and register the best.

  adaptflow run [--params FILE] [--profile NAME] [--strategies a,b|all]
  adaptflow strategies
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, fields

# Errors a user can fix: shown as their message, without a traceback.
_USER_ERRORS = ("SettingsError", "DataValidationError", "DataPipelineError", "BaseModelError")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adaptflow", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Settings live in params.yaml (defaults, one section per strategy, profiles). "
               "MLFLOW_TRACKING_URI overrides the local store under mlflow/.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the specialize flow: data, validation, strategies, registry",
                         description="Version the data with DVC, validate it with Great Expectations, "
                                     "train and evaluate each strategy, log to MLflow, and register "
                                     "the best candidate (moving @challenger when it earns it).")
    run.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    run.add_argument("--profile", help="profile from the params file's `profiles:`, e.g. smoke")
    run.add_argument("--strategies", help="comma-separated strategy names, or `all` "
                                          "(default: strategies.run in params)")
    sub.add_parser("strategies", help="list the registered strategies with their parameters and defaults")
    return parser


def _default(f) -> str:
    if f.default is not MISSING:
        return repr(f.default)
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return repr(f.default_factory())  # type: ignore[misc]
    return "(required)"


def list_strategies() -> str:
    from tasks.strategies import registry

    lines = []
    for s in registry.all_strategies():
        lines.append(f"{s.name}  [{'trains' if s.trains else 'no training'}; saves {s.saves}]  {s.summary}")
        for f in fields(s.params_cls):
            lines.append(f"    {f.name} = {_default(f)}")
    return "\n".join(lines)


def _run(args) -> int:
    from tasks.config import load_settings

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()] if args.strategies else None
    try:  # fail in a second, before Prefect starts, when a setting is wrong
        load_settings(args.params, args.profile, strategies)
    except ValueError as exc:
        print(f"adaptflow run: {exc}", file=sys.stderr)
        return 2
    from flows.specialize import SpecializeInput, specialize

    state = specialize(SpecializeInput(params_file=args.params, profile=args.profile,
                                       strategies=strategies), return_state=True)
    if state.is_completed():
        out = state.result()
        print(f"\n{out.table}\n\nMLflow parent run {out.parent_run_id}; data version {out.data_version}")
        return 0
    exc = state.result(raise_on_failure=False)
    name = type(exc).__name__
    if name in _USER_ERRORS:
        print(f"\nadaptflow run stopped: {exc}", file=sys.stderr)
        return 2
    print(f"\nadaptflow run failed ({name}): {exc}\nThe Prefect log above has the traceback.", file=sys.stderr)
    return 1


def _exit_on_sigterm() -> None:
    """SIGTERM (kill, a scheduler stopping us) becomes SystemExit, so open MLflow runs are
    closed as FAILED instead of being left RUNNING forever."""
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _exit_on_sigterm()
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()  # before Prefect, MLflow, DVC or transformers read their settings
    if args.command == "strategies":
        print(list_strategies())
        return 0
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
