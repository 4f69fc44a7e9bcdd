"""MLflow models-from-code entry point: MLflow runs this file when it loads a version, so
no pickled Python object is stored in the registry (only this file and the artifacts)."""
import mlflow
from tasks.artifacts.pyfunc import AdaptflowModel

mlflow.models.set_model(AdaptflowModel())
