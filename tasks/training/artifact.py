"""Kept for versions registered before tasks/artifacts existed: the pyfunc entry MLflow stored
with each of them (a copy of the old tasks/training/pyfunc_entry.py) imports AdaptflowModel from
here when another tool loads it with mlflow.pyfunc. adaptflow's own code uses tasks.artifacts."""
from tasks.artifacts.pyfunc import AdaptflowModel  # noqa: F401
