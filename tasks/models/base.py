"""The base model: where its folder is and what it is (its fingerprint).

`model.base` in params is either a packaged model name (tasks/models/packaged.py) or a path to
a Hugging Face model folder.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tasks.models.packaged import PACKAGED, BaseModelError

# A model folder has its weights (one file, or an index of shards) and its tokenizer.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "tokenizer.model")
# Files that define a base's behaviour: weights and tokenizer (not READMEs).
_FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".gguf")
_FINGERPRINT_NAMES = ("config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json",
                      "special_tokens_map.json", "merges.txt", "vocab.json")


@dataclass(frozen=True)
class ResolvedBase:
    """A base model resolved to a folder on this machine, and what it is."""

    name: str          # as written in params (a packaged name or a path)
    path: Path         # the Hugging Face model folder
    fingerprint: str   # sha256 over weights and tokenizer files


def resolve_base_path(name: str, root: Path | None = None) -> Path:
    if name in PACKAGED:
        return PACKAGED[name]()
    path = Path(name).expanduser()
    if not path.is_absolute() and root is not None:
        path = root / path
    if not (path / "config.json").is_file():
        raise BaseModelError(
            f"model.base={name!r}: {path} is not a Hugging Face model folder (no config.json); "
            f"use one of {', '.join(PACKAGED)} or a folder written by save_pretrained"
        )
    for what, names in (("weights", WEIGHT_FILES), ("tokenizer", TOKENIZER_FILES)):
        if not any((path / n).is_file() for n in names):
            raise BaseModelError(f"model.base={name!r}: {path} has no {what} (none of {', '.join(names)}); "
                                 f"save the model and its tokenizer there with save_pretrained")
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


def load_base(name: str, root: Path | None = None) -> ResolvedBase:
    path = resolve_base_path(name, root)
    return ResolvedBase(name=name, path=path, fingerprint=fingerprint(path))


def check_fingerprint(expected: str, base: ResolvedBase, artifact: str) -> None:
    """An artifact is never loaded onto a base whose fingerprint differs: that is an error."""
    if expected != base.fingerprint:
        raise BaseModelError(
            f"{artifact} was trained on a base with fingerprint {expected[:12]}…, but "
            f"{base.name} ({base.path}) has fingerprint {base.fingerprint[:12]}…; load it onto the "
            f"base it was trained on (the version's tags name it)"
        )


CAUSAL_ARCHITECTURES = ("ForCausalLM", "LMHeadModel")   # class-name endings of models with an LM head


def check_base_for_task(path: Path, name: str, task: str) -> None:
    """A task type that writes (generation) needs a base that can: a causal LM (its config names a
    *ForCausalLM / *LMHeadModel architecture). An encoder such as MiniLM is refused by name."""
    from tasks.tasktypes import task_type

    if task_type(task).base_kind != "causal_lm":
        return
    config = json.loads((path / "config.json").read_text())
    archs = config.get("architectures") or []
    if not any(a.endswith(CAUSAL_ARCHITECTURES) for a in archs):
        raise BaseModelError(f"task: {task} needs a causal LM base (a model with a language-model head); "
                             f"model.base={name!r} is {', '.join(archs) or config.get('model_type', 'unknown')}; "
                             f"pass --base with a causal LM folder, or use the headlines profile "
                             f"(smollm2-135m-instruct)")
