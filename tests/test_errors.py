"""The user-error family (tasks/errors.py): every error a user can fix is a `UserError`, keeps its
built-in base, and survives the pickle a strategy process sends its failure back in."""
from __future__ import annotations

import importlib
import pickle

import pytest

from tasks.errors import UserError

# The errors flows/cli.py used to recognise by class name (its former _USER_ERRORS), where they live.
FORMER_USER_ERRORS = {
    "SettingsError": "tasks.config.schema",
    "DataValidationError": "tasks.data.contract",
    "DataPipelineError": "tasks.data.dvc",
    "BaseModelError": "tasks.models.packaged",
    "GovernanceError": "tasks.registry.errors",
    "DataSourceError": "tasks.data.source",
    "PrepareError": "tasks.data.prepare",
    "TrackingUnavailable": "tasks.ops.tracking_check",
    "HardwareError": "tasks.training.hardware",
    "AllStrategiesFailed": "tasks.ops.fanout",
    "ForeignArtifact": "tasks.artifacts.provenance",
    "DataLockTimeout": "tasks.data.lock",
}


@pytest.mark.parametrize("name", sorted(FORMER_USER_ERRORS))
def test_each_formerly_listed_error_is_a_user_error_with_its_builtin_base_first(name):
    cls = getattr(importlib.import_module(FORMER_USER_ERRORS[name]), name)
    assert issubclass(cls, UserError)
    assert cls.__mro__[1] in (ValueError, RuntimeError), cls.__mro__   # `except ValueError` still catches it
    back = pickle.loads(pickle.dumps(cls("set data.text_col")))         # tasks/ops/isolate.py's way back
    assert type(back) is cls and isinstance(back, UserError) and str(back) == "set data.text_col"

