"""The packaged artifact: what a strategy run saves (and a registered version holds), and the
MLflow pyfunc that loads it for other tools. adaptflow itself reads a registered version only
through `fetch_version` + `load_predictor`: nothing stored with a version runs.

The artifact folder has the strategy's own files (adapter safetensors, a whole model, or a
prompt config) and `adaptflow.json`: strategy, params, labels, max_length and the base model's
name and fingerprint. Loading resolves the base, refuses a fingerprint mismatch, then asks the
strategy to load its files onto that base.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

MANIFEST = "adaptflow.json"
# MLflow runs this file to build the pyfunc (models from code); it is not imported here.
PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_entry.py")


@dataclass(frozen=True)
class Manifest:
    strategy: str
    params: dict[str, Any]
    labels: list[str]
    max_length: int
    base_name: str
    base_fingerprint: str
    saves: str
    task: str = "classification"
    # generation: system_prompt, instruction (the prompt the version answers) and max_new_tokens
    generation: dict[str, Any] | None = None

    @property
    def head(self):
        from tasks.models.heads import Head

        return Head.for_task(self.task, self.labels)

    def prompt(self):
        from tasks.models.prompts import PromptFormat

        g = self.generation or {}
        return PromptFormat(g.get("system_prompt", ""), g.get("instruction", ""))

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


def requirements() -> list[str]:
    """The pip requirements a logged model states (mlflow wants them explicit)."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in
            ("torch", "transformers", "peft", "mlflow", "pandas", "adaptflow")]


def signature(task: str = "classification"):
    """Input: a `text` column. Output: the label, its probability, and one p_<label> column each;
    generation: the `output` text."""
    from mlflow.models import infer_signature

    if task == "generation":
        return infer_signature(pd.DataFrame({"text": ["an article"]}), pd.DataFrame({"output": ["a headline"]}))
    return infer_signature(pd.DataFrame({"text": ["a review"]}),
                           pd.DataFrame({"label": ["positive"], "probability": [0.9]}))


def load_predictor(folder: Path):
    """(model, tokenizer, manifest) for a saved strategy folder, base fingerprint checked."""
    from tasks.models.base import check_fingerprint, load_base
    from tasks.models.loading import load_tokenizer
    from tasks.strategies import registry

    manifest = Manifest.read(folder)
    base = load_base(manifest.base_name)
    check_fingerprint(manifest.base_fingerprint, base, f"the {manifest.strategy} artifact in {folder}")
    strategy = registry.get(manifest.strategy, manifest.task)
    params = strategy.parse_params(manifest.params)
    model = strategy.load(base.path, folder, manifest.head, params)
    return model.eval(), load_tokenizer(base.path), manifest


def predict_texts(model, tokenizer, manifest: Manifest, texts: list[str], batch_size: int = 16,
                  max_new_tokens: int | None = None) -> pd.DataFrame:
    if manifest.task == "generation":
        from tasks.evaluation.generate import generate_texts

        cap = min(max_new_tokens or 1 << 30, manifest.generation["max_new_tokens"])
        out = generate_texts(model, tokenizer, manifest.prompt(), texts, manifest.max_length, cap, batch_size)
        return pd.DataFrame({"output": out.texts})
    from tasks.evaluation.predict import predict_proba
    from tasks.models.encoding import encode_requests

    data = encode_requests(model, tokenizer, texts, manifest.max_length)
    probs = predict_proba(model, data, tokenizer.pad_token_id)
    out = pd.DataFrame({"label": [manifest.labels[i] for i in probs.argmax(1)],
                        "probability": probs.max(1)})
    for i, label in enumerate(manifest.labels):
        out[f"p_{label}"] = probs[:, i]
    return out


class AdaptflowModel(mlflow.pyfunc.PythonModel):
    """pyfunc: input a DataFrame with a `text` column (or a list of strings)."""

    def load_context(self, context):
        from tasks.env import apply_offline_defaults

        apply_offline_defaults()
        self._model, self._tokenizer, self._manifest = load_predictor(Path(context.artifacts["strategy"]))

    def predict(self, context, model_input: pd.DataFrame, params=None):
        if isinstance(model_input, pd.DataFrame):
            if "text" not in model_input.columns:
                raise ValueError(f"input needs a 'text' column; got {list(model_input.columns)}")
            texts = model_input["text"].tolist()
        else:
            texts = list(model_input)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if bad:
            raise ValueError(f"texts must be non-empty strings; bad at position(s) {bad[:10]}")
        return predict_texts(self._model, self._tokenizer, self._manifest, texts)


def fetch_version(model: str, version: str, dest: Path) -> Path:
    """Download the strategy folder of `models:/model/version` under dest and return it. Only the
    MLmodel file is read first; a version whose artifact is not adaptflow's (a pickle, code, a
    file type adaptflow does not write, another flavor) is refused before its files are fetched
    (tasks/training/provenance.py). Nothing stored with a version is ever executed."""
    import yaml
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    from tasks.training.provenance import ForeignArtifact, artifact_problems, strategy_path

    dest.mkdir(parents=True, exist_ok=True)
    repo = ModelsArtifactRepository(f"models:/{model}/{version}")
    top = [Path(f.path).name for f in repo.list_artifacts("")]
    if "MLmodel" not in top:
        raise ForeignArtifact(f"{model} v{version} was not logged by adaptflow (no MLmodel file); refused")
    mlmodel = yaml.safe_load(Path(repo.download_artifacts("MLmodel", str(dest))).read_text()) or {}
    problems = artifact_problems(mlmodel, top, [MANIFEST], MANIFEST)   # the folder is checked once fetched
    if not problems:
        folder = Path(repo.download_artifacts(strategy_path(mlmodel), str(dest)))
        files = [p for p in folder.rglob("*") if p.is_file() or p.is_symlink()]
        links = [p.name for p in files if p.is_symlink()]
        problems = artifact_problems(mlmodel, top, [str(p.relative_to(folder)) for p in files], MANIFEST)
        problems += [f"symbolic links {links[:5]}"] if links else []
    if problems:
        raise ForeignArtifact(f"{model} v{version} is not an adaptflow artifact and is refused "
                              f"(nothing of it was loaded): {'; '.join(problems)}")
    return folder
