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
    # A first run migrates a new Prefect database; on a busy 2-core machine that took over the
    # default 20 s and the run died with "Timed out while attempting to connect".
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}


def apply_offline_defaults() -> None:
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
