"""What every benchmark shares: the machine description, the default data encoded once, medians
of interleaved repeats, and writing results to bench/results/NAME.json.

Side by side, interleaved (A, B, A, B, ...), medians: these machines are shared and noisy, so a
ratio from one run is more trustworthy than two absolute figures from two runs.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def commit(root: Path = ROOT) -> str:
    """The code a figure was measured on: the checkout's commit, `+dirty` with uncommitted changes
    to tracked files (docs/performance.md names the commit of every figure)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()
    try:
        return git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "not recorded (not a git checkout)"


def machine() -> dict:
    import psutil
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    flags = next((line for line in lines if line.startswith("flags")), "")
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                 platform.processor())
    return {"cpu": model, "commit": commit(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "avx512_bf16": "avx512_bf16" in flags.split(), "amx_bf16": "amx_bf16" in flags.split(),
            "python": platform.python_version(), "torch": torch.__version__,
            "load_average_1m": round(os.getloadavg()[0], 2)}


def write(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps({"machine": machine(), **result}, indent=2))
    return out


def interleaved(fns: dict[str, Callable[[], float | None]], repeats: int) -> dict[str, list[float]]:
    """Run each fn once per round, in turn, `repeats` rounds. A fn returns its own measured
    seconds (to leave its setup out), or None to be timed whole."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            start = time.perf_counter()
            own = fn()
            times[key].append(own if own is not None else time.perf_counter() - start)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    columns = columns or list(rows[0])
    cell = lambda v: f"{v:,.3g}" if isinstance(v, float) and abs(v) < 100 else (
        f"{v:,.0f}" if isinstance(v, float) else str(v))
    text = [[c for c in columns]] + [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in text) for i in range(len(columns))]
    out = ["  ".join(v.rjust(w) if j else v.ljust(w) for j, (v, w) in enumerate(zip(line, widths))) for line in text]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


@dataclass(frozen=True)
class Data:
    """The default data's train and test splits, tokenized once by the base's tokenizer."""
    train: object           # tasks.models.encoding.Encoded
    test: object
    texts: list[str]        # the train texts (a Hugging Face script tokenizes them itself)
    labels: list[str]
    pad_id: int
    base_path: Path
    max_length: int


def default_splits(settings) -> dict:
    """The train / validation / test frames of the data `settings` describe, made by the flow's own
    code (tasks.data.prepare) into a bench-owned folder keyed by those settings, never read from
    data/processed: after `adaptflow run --data other.csv` that folder holds other rows and other
    labels (a bench once died there with "Target -9223372036854775808 is out of bounds"). Says
    which data it is; labels outside the settings' label set are an error naming them."""
    import hashlib
    from dataclasses import asdict

    import pandas as pd

    from tasks.data.prepare import SPLITS

    key = hashlib.sha256(json.dumps(asdict(settings.data), sort_keys=True, default=str).encode()).hexdigest()[:12]
    processed = ROOT / ".cache" / "bench-data" / key
    if not all((processed / f"{s}.parquet").is_file() for s in SPLITS):
        _prepare(settings, processed)
    frames = {s: pd.read_parquet(processed / f"{s}.parquet") for s in SPLITS}
    labels = set(settings.validation.labels)
    unknown = sorted({str(x) for f in frames.values() if "label" in f for x in f["label"].unique()} - labels) \
        if labels else []
    if unknown:
        raise SystemExit(f"{processed}: labels {unknown} are not validation.labels {sorted(labels)}; delete the folder")
    print(f"data: {settings.data.source} ({', '.join(f'{s} {len(f):,}' for s, f in frames.items())} rows), "
          f"prepared by tasks.data.prepare into {processed.relative_to(ROOT)}")
    return frames


def headlines(names: list[str]):
    """(settings, splits, base) of the headlines profile for strategies `names`, offline, with
    transformers' warnings off: what the generation benches measure on."""
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    from transformers.utils import logging as hf_logging

    from tasks.config import load_settings
    from tasks.models.base import load_base

    hf_logging.set_verbosity_error()
    settings = load_settings(str(ROOT / "params.yaml"), profile="headlines", strategies=names)
    return settings, default_splits(settings), load_base(settings.model.base, settings.root)


def default_data(params: str = "params.yaml") -> Data:
    """The default data's train and test splits (`default_splits`), tokenized with the default
    base's tokenizer."""
    from tasks.config import load_settings
    from tasks.models.base import resolve_base_path
    from tasks.models.encoding import encode
    from tasks.models.loading import load_tokenizer

    settings = load_settings(str(ROOT / params))
    frames = {s: f for s, f in default_splits(settings).items() if s in ("train", "test")}
    labels = list(settings.validation.labels)
    ids = {label: i for i, label in enumerate(labels)}
    base_path = resolve_base_path(settings.model.base, settings.root)
    tok = load_tokenizer(base_path)
    enc = {s: encode(tok, f["text"].tolist(), f["label"].map(ids).to_numpy(), settings.model.max_length)
           for s, f in frames.items()}
    return Data(enc["train"], enc["test"], frames["train"]["text"].tolist(), labels, tok.pad_token_id,
                base_path, settings.model.max_length)


def _prepare(settings, processed: Path) -> None:
    from dataclasses import replace

    from tasks.data.prepare import prepare
    from tasks.data.source import resolve_source

    prepare(replace(settings.data, processed_dir=str(processed)), resolve_source(settings.data.source, settings.root))


def training_bench(strategies: str):
    """What a training benchmark starts from: offline settings, transformers' logging quiet,
    the default params (torch set to their thread count), the default data, and the strategies
    named in `strategies` (comma-separated; empty: every trainable one). Returns
    (settings, data, names)."""
    from tasks.env import apply_offline_defaults

    apply_offline_defaults()
    import torch
    from transformers.utils import logging as hf_logging

    from tasks.config import load_settings
    from tasks.strategies import registry

    hf_logging.set_verbosity_error()
    names = [s for s in strategies.split(",") if s] or [s.name for s in registry.all_strategies() if s.trains]
    settings = load_settings(str(ROOT / "params.yaml"), strategies=names)   # each one's params parsed
    torch.set_num_threads(settings.train.threads)
    return settings, default_data(), names
