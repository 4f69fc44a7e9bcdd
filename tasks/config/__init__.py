"""Settings: params.yaml, a profile and the command line, read once by `load_settings` and
returned as typed, validated sections (project, data, validation, model, train, evaluation,
ops, serving, policy, outcomes, canary, review, feedback, drift, cost, each strategy's params). Every other package reads settings from here.
May import: tasks.strategies (to validate each strategy's params), tasks.models, and the shared
tasktypes, errors and env. Nothing else of tasks."""
from tasks.config.load import (Settings, load_settings, read_dataset_params, read_pipeline_account, read_review_settings,
                               run_overrides, user_data_override, with_labels, write_dataset_params)
from tasks.config.cost import CostSettings
from tasks.config.ops import OpsSettings
from tasks.config.schema import SettingsError, merge, parse_section
from tasks.config.sections import (DATASET_KEYS, DataSettings, EvaluationSettings, GenerationSettings, ModelSettings,
                                   ProjectSettings, TrainSettings, ValidationSettings)
from tasks.config.policy import PERSONAL_DATA, PolicySettings
from tasks.config.feedback import DriftSettings, FeedbackSettings
from tasks.config.release import CanarySettings, OutcomeSettings
from tasks.config.review import HumanReviewRequirement, ReviewSettings
from tasks.config.serving import ServingSettings
from tasks.config.tune import TuneSettings

__all__ = ["HumanReviewRequirement", "ReviewSettings", "read_review_settings", "CanarySettings", "CostSettings", "DriftSettings", "FeedbackSettings", "OutcomeSettings", "DATASET_KEYS", "DataSettings", "EvaluationSettings", "GenerationSettings", "ModelSettings", "OpsSettings", "PERSONAL_DATA", "PolicySettings",
           "ProjectSettings", "ServingSettings", "Settings", "SettingsError", "TrainSettings", "TuneSettings",
           "ValidationSettings", "load_settings", "merge", "parse_section", "read_dataset_params",
           "read_pipeline_account", "run_overrides", "user_data_override", "with_labels", "write_dataset_params"]
