"""What a saved version is: `adaptflow.json` beside the strategy's own files (adapter
safetensors, a whole model, or a prompt config) in one folder, written by a run and read by
every loader."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

from tasks.tasktypes import DEFAULT

MANIFEST = "adaptflow.json"


@dataclass(frozen=True, kw_only=True)
class Manifest:
    strategy: str
    params: dict[str, Any]
    labels: list[str]
    max_length: int
    base_name: str
    base_fingerprint: str
    saves: str
    task: str = DEFAULT
    # generation: system_prompt, instruction (the prompt the version answers), max_new_tokens and
    # precision (fp32 | bf16: its weights while generating, as the run scored it; fp32 if absent,
    # and for a classifier, which has no generation section)
    generation: dict[str, Any] | None = None

    @property
    def head(self):
        from tasks.models.heads import Head

        return Head.for_task(self.task, self.labels)

    def prompt(self):
        from tasks.models.prompts import PromptFormat

        g = self.generation or {}
        return PromptFormat(g.get("system_prompt", ""), g.get("instruction", ""))

    def __post_init__(self):
        if self.generation_precision not in ("fp32", "bf16"):   # refused when read, not per request
            raise ValueError(f"the {self.strategy} version's manifest ({MANIFEST}) says generation precision "
                             f"{self.generation_precision!r}; it must be fp32 or bf16")

    @property
    def generation_precision(self) -> str:
        return (self.generation or {}).get("precision", "fp32")

    def new_tokens(self, asked: int | None = None) -> int:
        """The generation cap: the version's own max_new_tokens, lowered (never raised) by what a
        caller asks for; the one rule for serving, re-scoring and the pyfunc."""
        caps = [c for c in (asked, (self.generation or {}).get("max_new_tokens")) if c is not None]
        if not caps:
            raise ValueError(f"the {self.strategy} version states no max_new_tokens (its manifest's generation "
                             f"section); pass one")
        return min(caps)

    def write(self, folder: Path) -> None:
        (folder / MANIFEST).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, folder: Path) -> "Manifest":
        return cls(**json.loads((folder / MANIFEST).read_text()))


def params_dict(params: Any) -> dict[str, Any]:
    return asdict(params) if is_dataclass(params) else dict(params)


def write_artifact(strategy, model, folder: Path, manifest: Manifest) -> int:
    """The strategy's own files and the manifest into `folder`; returns the strategy files' bytes
    (the manifest is not counted: it is the same few hundred bytes for every strategy)."""
    folder.mkdir(parents=True, exist_ok=True)
    strategy.save(model, folder)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    manifest.write(folder)
    return size
