"""Offline (and quiet) settings for every entry point, declared once: the CLI, the strategy processes, model
loaders and the test suite call `apply_offline_defaults()` (never on import); the Makefile runs
its own commands through `python -m tasks.env CMD ...`."""
from __future__ import annotations

import os
import sys

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
    # Not an offline setting, but one every entry point needs: MLflow 3 draws a "Downloading
    # artifacts" tqdm bar for every download, also when the output is not a terminal, where each
    # redraw is kept (`make demo`'s log had one per re-scored version and report figure).
    # adaptflow's own progress lines stay.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def apply_offline_defaults() -> None:
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)


def main(argv: list[str]) -> int:
    """`python -m tasks.env CMD ARGS...`: run CMD with the offline defaults (an already set
    variable wins)."""
    if not argv:
        print("usage: python -m tasks.env CMD [ARGS...]", file=sys.stderr)
        return 2
    apply_offline_defaults()
    os.execvp(argv[0], argv)
    return 0   # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
