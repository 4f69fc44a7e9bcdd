"""Is a registered version's artifact adaptflow's own? Decided from what it declares and which
files it holds, before anything of it is loaded.

Whoever has EDIT on a registered model (or write access to the artifact store) can register a
version of their own, and loading it through `mlflow.pyfunc.load_model` would unpickle its
`python_model.pkl` or import its loader module inside the job that loads it. adaptflow never
loads a version that way: it reads the strategy folder through its own loader (the strategy
named in the manifest, safetensors weights). These checks refuse a version whose artifact could
make even that loader run code: a pickle anywhere, a Python file or any other unknown file type
in the strategy folder (PyTorch `.bin` weights are pickles), a flavor other than adaptflow's.
"""
from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from tasks.errors import UserError

# What adaptflow's strategies write (adapter / model weights, configs, PEFT's README, a retrieval
# strategy's FAISS index: vectors and ids in FAISS's own format, read by faiss.read_index, no code).
STRATEGY_SUFFIXES = (".safetensors", ".json", ".md", ".txt", ".faiss")
# The pyfunc adaptflow logs is models-from-code (tasks/artifacts/pyfunc_entry.py): no pickle.
CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
PICKLE_SUFFIXES = (".pkl", ".pickle", ".cloudpickle", ".joblib", ".bin", ".pt", ".pth", ".ckpt")


class ForeignArtifact(ValueError, UserError):
    """A registered version whose artifact is not adaptflow's: refused, nothing of it loaded."""


def strategy_path(mlmodel: dict[str, Any]) -> str:
    """The strategy folder inside the model artifact, as the MLmodel file declares it."""
    pyfunc = (mlmodel.get("flavors") or {}).get("python_function") or {}
    entry = (pyfunc.get("artifacts") or {}).get("strategy") or {}
    return str(entry.get("path", ""))


def artifact_problems(mlmodel: dict[str, Any], top_files: list[str], strategy_files: list[str],
                      manifest: str) -> list[str]:
    """Why a version is not adaptflow's (empty: it is). `top_files`: the model artifact's
    top-level names; `strategy_files`: paths inside the strategy folder, relative to it
    (symbolic links listed as such are refused by the caller); `manifest`: adaptflow's file name."""
    problems = []
    flavors = mlmodel.get("flavors") or {}
    if set(flavors) != {"python_function"}:
        problems.append(f"flavors {sorted(flavors)} (adaptflow logs python_function only)")
    pyfunc = flavors.get("python_function") or {}
    if pyfunc.get("loader_module") != CODE_LOADER:
        problems.append(f"loader module {pyfunc.get('loader_module')!r} (adaptflow's is {CODE_LOADER})")
    if pyfunc.get("python_model") or pyfunc.get("code"):
        problems.append("a pickled python_model or a code folder")
    pickles = [f for f in top_files if f.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:
        problems.append(f"pickled files {pickles[:5]}")
    path = PurePosixPath(strategy_path(mlmodel))
    if not path.parts or path.is_absolute() or ".." in path.parts or path.parts[0] != "artifacts":
        problems.append(f"strategy artifact path {str(path)!r} (adaptflow's is artifacts/<folder>)")
    others = [f for f in strategy_files if not f.lower().endswith(STRATEGY_SUFFIXES)]
    if others:
        problems.append(f"files other than {', '.join(STRATEGY_SUFFIXES)} in its strategy folder: {others[:5]}")
    if manifest not in strategy_files:
        problems.append(f"no {manifest} manifest in its strategy folder")
    return problems
