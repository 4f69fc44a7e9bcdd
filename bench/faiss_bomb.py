"""Peak memory of loading a crafted retrieval index: an 82-byte `index.faiss` whose headers claim
1,398,102 vectors of 384 floats (2.0 GiB), beside an `index.json` of 2 rows (docs/security.md).

    PYTHONPATH=$PWD .venv/bin/python bench/faiss_bomb.py
    # on an older tree: PYTHONPATH=<that tree> .venv/bin/python bench/faiss_bomb.py

Prints the process's peak RSS before and after `RetrievalIndex.load` and its outcome. Run it in
a fresh process: ru_maxrss is the process's peak so far."""
from __future__ import annotations

import json
import resource
import struct
import tempfile
from pathlib import Path

ROWS, DIM = 1_398_102, 384


def main() -> None:
    from tasks.models.base import load_base
    from tasks.models.packaged import MINILM
    from tasks.models.retrieval import RetrievalError, RetrievalIndex

    encoder = load_base(MINILM)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "index"
        folder.mkdir()
        header = struct.pack("<iqqqBi", DIM, ROWS, 1 << 20, 1 << 20, 1, 0)
        (folder / "index.faiss").write_bytes(b"IxMp" + header + b"IxFI" + header + struct.pack("<Q", ROWS * DIM))
        (folder / "index.json").write_text(json.dumps({
            "identity": {"data_version": "v", "embedder": MINILM, "embedder_fingerprint": encoder.fingerprint,
                         "rows": 2, "dim": DIM, "max_length": 128}, "texts": ["a", "b"], "answers": ["x", "y"]}))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            RetrievalIndex.load(folder, encoder)
            outcome = "loaded"
        except RetrievalError as exc:
            outcome = str(exc).split(": ", 1)[1][:160]
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"index.faiss of {(folder / 'index.faiss').stat().st_size} bytes claiming {ROWS * DIM * 4 / 2**30:.1f} GiB: "
              f"peak RSS {before / 1024:,.0f} MiB before the load, {after / 1024:,.0f} MiB after "
              f"(+{(after - before) / 1024:,.0f} MiB); {outcome}")


if __name__ == "__main__":
    main()
