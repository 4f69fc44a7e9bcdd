"""Offline settings for every entry point (called by the CLI and model loaders, never on import)."""
from __future__ import annotations

import os

OFFLINE = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",   # avoids fork warnings from the Rust tokenizer
}


def apply_offline_defaults() -> None:
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
