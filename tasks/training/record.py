"""A strategy run as MLflow records it: its child run (tags, params, the training input), then
everything `run.compute` measured (curves, prompt variants, the learning curve, test
predictions and calibration, metrics) and the saved artifact as a logged model."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import mlflow
from tasks.artifacts.manifest import params_dict
from tasks.artifacts.pyfunc import PYFUNC_ENTRY, requirements, signature
from tasks.training.context import RunContext
from tasks.training.hardware import generation_precision
from tasks.training.loop import TrainResult
from tasks.training.loop_settings import fused_adamw
from tasks.training.strategy_run import Outcome, StrategyInputs
from tasks.tasktypes import task_type
from tasks.tracking import log_dataset


@contextmanager
def strategy_run(ctx: RunContext, inputs: StrategyInputs) -> Iterator[str]:
    """The strategy's child run, with the run's tags, its params and its training input logged
    before anything trains (a failure leaves a run that says what was attempted)."""
    base = inputs.base
    tags = {**ctx.tags, "base.name": base.name, "base.fingerprint": base.fingerprint,
            "strategy": inputs.name, "saves": inputs.strategy.saves}
    cfg = ctx.settings.train
    with mlflow.start_run(experiment_id=ctx.experiment_id, run_name=inputs.name, parent_run_id=ctx.parent_run_id,
                          tags=tags) as run:
        mlflow.log_params({f"strategy.{k}": v for k, v in params_dict(inputs.params).items()})
        hw = inputs.hardware
        mlflow.log_params({f"train.{k}": v for k, v in asdict(cfg).items()}
                          | {"model.base": base.name, "model.max_length": ctx.settings.model.max_length,
                             "train.device_used": hw.device, "train.precision_used": hw.precision,
                             "train.adamw_used": "fused" if fused_adamw(cfg.adamw, hw.precision) else "foreach",
                             "train.effective_batch": cfg.effective_batch})
        mlflow.set_tag("train.hardware", hw.reason)
        if inputs.head.generates:
            precision, why = generation_precision(ctx.settings.generation.precision, hw)
            mlflow.log_param("generation.precision_used", precision)
            mlflow.set_tag("generation.precision", why)
        _log_training_input(ctx)
        yield run.info.run_id


def _log_training_input(ctx: RunContext) -> None:
    """The train split as an MLflow dataset whose digest is its DVC md5."""
    with warnings.catch_warnings():
        # MLflow registers two local-file dataset sources with one name and warns that the
        # path is ambiguous between them; either resolves the same file.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        dataset = mlflow.data.from_pandas(ctx.frames["train"], source=str(ctx.data.split_files["train"]),
                                          name="train", targets=task_type(ctx.settings.task).answer_column,
                                          digest=ctx.data.split_hashes["train"][:8])
    log_dataset(dataset, context="training")


def log_outcome(inputs: StrategyInputs, outcome: Outcome, folder: Path) -> str:
    """Everything measured, then the saved artifact in `folder` as a logged model; returns its
    models:/ URI."""
    if outcome.training is not None:
        _log_curves(outcome.training)
    if outcome.variants is not None:
        for r in outcome.variants.rows:
            for name, value in r["test"].items():   # accuracy (classification), rougeL (generation)
                mlflow.log_metric(f"variant_test_{name}", value, step=r["variant"])
        mlflow.log_dict({"chosen_variant": outcome.variants.chosen, "variants": outcome.variants.rows},
                        "prompt_variants.json")
    for n, accuracy in outcome.learning_curve or []:
        mlflow.log_metric("learning_curve_accuracy", accuracy, step=n)
    if inputs.head.generates:
        from tasks.training.generation import outputs_record

        mlflow.log_dict(outputs_record(outcome.details), "test_outputs.json")
    else:
        _log_predictions(outcome, inputs.labels)
    mlflow.log_metrics(outcome.metrics)
    if inputs.strategy.saves == "config_only":   # the prompt itself, visible on the run page
        mlflow.log_artifacts(str(folder), "prompt")
    with warnings.catch_warnings():
        # The signature says what the model takes. With an input example MLflow would also load
        # the model and predict on it to check the example (seconds per strategy), so none is
        # given, and its warning about that is not printed in every run.
        warnings.filterwarnings("ignore", message=".*An input example was not provided")   # after a colour code
        info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_ENTRY),
                                       artifacts={"strategy": str(folder)},
                                       signature=signature(inputs.head.task), pip_requirements=requirements())
    return info.model_uri


def _log_curves(result: TrainResult) -> None:
    for step, loss in result.train_loss:
        mlflow.log_metric("train_loss", loss, step=step)
    for step, loss in result.val_loss:
        mlflow.log_metric("val_loss", loss, step=step)
    mlflow.log_metrics({"train_steps": result.steps, "best_step": result.best_step,
                        "stopped_early": float(result.stopped_early),
                        "resumed_from_step": result.resumed_from_step})   # > 0: went on from a checkpoint


def _log_predictions(outcome: Outcome, labels: list[str]) -> None:
    """The confusion matrix, per-example test predictions and the reliability diagram."""
    from tasks.evaluation.plots import pyplot, reliability_figure

    d = outcome.details
    mlflow.log_dict({"labels": labels, "matrix_true_by_predicted": d.confusion.tolist()}, "confusion_matrix.json")
    mlflow.log_dict({"y_true": d.y_true.tolist(), "y_pred": d.probs.argmax(1).tolist(),
                     "confidence": d.probs.max(1).round(5).tolist()}, "test_predictions.json")
    mlflow.log_dict(asdict(d.reliability), "reliability.json")
    figure = reliability_figure(d.reliability)
    mlflow.log_figure(figure, "reliability_diagram.png")
    pyplot().close(figure)
