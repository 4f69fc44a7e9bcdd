"""The MLflow pyfunc a registered version is logged with, for other tools (adaptflow itself reads
a version only through fetch_version + load_predictor: nothing stored with a version runs).
MLflow builds it by running `pyfunc_entry.py` (models from code: no pickle)."""
from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from tasks.tasktypes import DEFAULT, task_type

# MLflow runs this file to build the pyfunc (models from code); it is not imported here.
PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_entry.py")


def requirements() -> list[str]:
    """The pip requirements a logged model states (mlflow wants them explicit)."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in
            ("torch", "transformers", "peft", "mlflow", "pandas", "adaptflow")]


def signature(task: str = DEFAULT):
    """Input: a `text` column. Output: the task type's answer (classification: the label, its
    probability, and one p_<label> column each; generation: the `output` text)."""
    from mlflow.models import infer_signature

    example_in, example_out = task_type(task).signature_example
    return infer_signature(pd.DataFrame(example_in), pd.DataFrame(example_out))


class AdaptflowModel(mlflow.pyfunc.PythonModel):
    """pyfunc: input a DataFrame with a `text` column (or a list of strings)."""

    def load_context(self, context):
        from tasks.artifacts.predictor import load_predictor
        from tasks.env import apply_offline_defaults

        apply_offline_defaults()
        self._predictor = load_predictor(Path(context.artifacts["strategy"]))

    def predict(self, context, model_input: pd.DataFrame, params=None):
        from tasks.artifacts.predictor import predict

        if isinstance(model_input, pd.DataFrame):
            if "text" not in model_input.columns:
                raise ValueError(f"input needs a 'text' column; got {list(model_input.columns)}")
            texts = model_input["text"].tolist()
        else:
            texts = list(model_input)
        return predict(self._predictor, texts).frame()
