"""A vector index of the train split's inputs, for retrieval beside a strategy (docs/retrieval.md).

The inputs are embedded with a sentence encoder (the packaged MiniLM by default) and searched
with FAISS: a maintained library that runs embedded in one process here and offers the same
search over IVF / HNSW / product-quantised and GPU indexes when an index outgrows one machine's
memory. Here: exact inner product over unit vectors (cosine), `IndexIDMap(IndexFlatIP)`, ids =
row positions in the train split.

An index is bound to what it was built from: the train split's DVC hash (the data version) and
the encoder's fingerprint. Loading it for other data or another encoder is refused, like an
adapter on the wrong base. Leakage guard: only train rows are ever in the index, and a train row
never retrieves itself (`exclude`).

An index file comes with a registry version, so it is read as untrusted (issue 27, finding 2): a
hundred-byte file whose header claims gigabytes made `faiss.read_index` allocate them. Before
FAISS reads it, `check_index_file` parses its header and allows only what `build` writes
(`IndexIDMap` over `IndexFlatIP`, inner product), with the identity's rows and dimension, the
encoder's dimension, and a file size equal to what those imply (rows x dim x 4 bytes of vectors,
rows x 8 of ids, 90 of headers); after reading, every id must be a distinct row position. A
refusal reads the file's size and 90 bytes of it, nothing more."""
from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tasks.models.base import ResolvedBase

INDEX_FILE, META_FILE = "index.faiss", "index.json"
# `lora+retrieval`: a trained strategy whose inputs carry retrieved examples (tasks/strategies/with_retrieval.py).
RETRIEVAL_SUFFIX = "+retrieval"


class RetrievalError(ValueError):
    """An index cannot serve this request: other data, another encoder, or a broken file."""


@dataclass(frozen=True)
class IndexIdentity:
    data_version: str            # the train split's DVC md5: the rows the index holds
    embedder: str                # the encoder's name (model.base style)
    embedder_fingerprint: str    # sha256 of its weights and tokenizer (tasks/models/base.py)
    rows: int
    dim: int
    max_length: int              # tokens of each text the encoder read


@dataclass
class RetrievalIndex:
    identity: IndexIdentity
    texts: list[str]             # the train inputs, by row position
    answers: list[str]           # their labels (classification) or targets (generation)
    encoder_path: Path
    index: object                # a faiss.Index
    build_seconds: float = 0.0   # embedding the rows and adding them (what building it cost)

    @classmethod
    def build(cls, encoder: ResolvedBase, texts: list[str], answers: list[str], data_version: str,
              max_length: int = 128) -> "RetrievalIndex":
        import time

        import faiss

        from tasks.models.embedding import embed_texts

        start = time.perf_counter()
        if len(texts) != len(answers) or not texts:
            raise RetrievalError(f"an index needs one answer per text and at least one text "
                                 f"({len(texts)} texts, {len(answers)} answers)")
        vectors = embed_texts(texts, encoder.path, max_length=max_length)
        index = faiss.IndexIDMap(faiss.IndexFlatIP(vectors.shape[1]))
        index.add_with_ids(vectors, np.arange(len(texts), dtype=np.int64))
        identity = IndexIdentity(data_version, encoder.name, encoder.fingerprint, len(texts), vectors.shape[1],
                                 max_length)
        return cls(identity, list(texts), list(answers), encoder.path, index, time.perf_counter() - start)

    def search(self, queries: list[str], k: int, exclude: list[int | None] | None = None) -> list[list[int]]:
        """The k nearest train rows of each query, nearest first; `exclude[i]` is query i's own
        train row (a train example never retrieves itself)."""
        from tasks.models.embedding import embed_texts

        if not 1 <= k < self.identity.rows:
            raise RetrievalError(f"retrieval k={k}: must be at least 1 and below the index's "
                                 f"{self.identity.rows} rows")
        exclude = exclude or [None] * len(queries)
        vectors = embed_texts(queries, self.encoder_path, max_length=self.identity.max_length)
        _, ids = self.index.search(vectors, k + 1)   # one spare: the query's own row, when excluded
        return [[int(j) for j in row if j >= 0 and j != own][:k] for row, own in zip(ids, exclude)]

    def neighbours(self, queries: list[str], k: int, exclude: list[int | None] | None = None
                   ) -> list[list[tuple[str, str]]]:
        """(text, answer) of each query's k nearest train rows."""
        return [[(self.texts[j], self.answers[j]) for j in row] for row in self.search(queries, k, exclude)]

    def save(self, folder: Path) -> None:
        """FAISS's own index file (no pickle) and the rows and identity as JSON."""
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / INDEX_FILE))
        (folder / META_FILE).write_text(json.dumps({"identity": asdict(self.identity), "texts": self.texts,
                                                    "answers": self.answers, "build_seconds": self.build_seconds}))

    def size_bytes(self) -> int:
        """What the index costs to store: FAISS's vectors plus the rows (the saved files)."""
        import faiss

        return len(faiss.serialize_index(self.index)) + len(json.dumps([self.texts, self.answers]).encode())

    @classmethod
    def load(cls, folder: Path, encoder: ResolvedBase, data_version: str | None = None) -> "RetrievalIndex":
        """The index in `folder`, refused unless it was built by `encoder` (same fingerprint) and,
        when given, from `data_version`; its FAISS file is checked before FAISS reads it
        (`check_index_file`) and its ids after."""
        import faiss

        try:
            meta = json.loads((folder / META_FILE).read_text())
            identity = IndexIdentity(**meta["identity"])
            texts, answers = list(meta["texts"]), list(meta["answers"])
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise RetrievalError(f"{folder}: not a readable retrieval index ({type(exc).__name__}: {exc}); "
                                 f"rebuild it with `adaptflow run`") from exc
        check_identity(identity, encoder, data_version, str(folder))
        if not len(texts) == len(answers) == identity.rows or identity.rows < 1:
            raise RetrievalError(f"{folder}: {len(texts)} texts and {len(answers)} answers, its identity says "
                                 f"{identity.rows} rows; rebuild it")
        dim = embedding_dim(encoder)
        if identity.dim != dim:
            raise RetrievalError(f"{folder}: vectors of dimension {identity.dim}, but {encoder.name} embeds in "
                                 f"{dim}; rebuild it")
        check_index_file(folder / INDEX_FILE, identity.rows, dim)
        try:
            index = faiss.read_index(str(folder / INDEX_FILE))
        except RuntimeError as exc:
            raise RetrievalError(f"{folder / INDEX_FILE}: FAISS cannot read it ({exc}); rebuild it") from exc
        ids = faiss.vector_to_array(index.id_map)
        if index.ntotal != identity.rows or len(np.unique(ids)) != identity.rows or ids.min() < 0 \
                or ids.max() >= identity.rows:
            raise RetrievalError(f"{folder}: the index's ids are not the row positions 0..{identity.rows - 1} "
                                 f"(each once); rebuild it")
        return cls(identity, texts, answers, encoder.path, index, meta.get("build_seconds", 0.0))


def embedding_dim(encoder: ResolvedBase) -> int:
    """The length of the encoder's sentence vectors: its hidden size (mean-pooled last layer), read
    from its config.json (a refusal should not cost importing transformers: ~270 MB)."""
    try:
        return int(json.loads((Path(encoder.path) / "config.json").read_text())["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError):
        from transformers import AutoConfig

        return int(AutoConfig.from_pretrained(encoder.path).hidden_size)


# What `build` writes, as faiss.write_index lays it out (FAISS 1.x, little-endian): IndexIDMap's
# fourcc and header, IndexFlatIP's fourcc and header, the vectors (a float count, then floats),
# the ids (a count, then int64s). A header: d (int32), ntotal (int64), two unused int64s,
# is_trained (uint8), metric_type (int32; 0 = inner product).
_HEADER = struct.Struct("<iqqqBi")
_ID_MAP, _FLAT_IP, _INNER_PRODUCT = b"IxMp", b"IxFI", 0
_FIXED_BYTES = 2 * (4 + _HEADER.size) + 8 + 8   # 90


def check_index_file(path: Path, rows: int, dim: int) -> None:
    """Refuse an index file other than `build`'s for `rows` vectors of `dim` floats, from its
    size and 90 bytes of headers, before FAISS allocates anything it claims."""
    expected = _FIXED_BYTES + rows * dim * 4 + rows * 8
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(2 * (4 + _HEADER.size) + 8)
            fh.seek(len(head) + rows * dim * 4)
            id_count = fh.read(8)
    except OSError as exc:
        raise RetrievalError(f"{path}: cannot be read ({type(exc).__name__}); rebuild the index") from exc
    problem = None
    if size != expected:
        problem = f"{size:,} bytes where {rows:,} vectors of dimension {dim} take {expected:,}"
    elif head[:4] != _ID_MAP or head[4 + _HEADER.size:8 + _HEADER.size] != _FLAT_IP:
        problem = f"index types {head[:4]!r} / {head[4 + _HEADER.size:8 + _HEADER.size]!r}; adaptflow writes only " \
                  f"IndexIDMap over IndexFlatIP ({_ID_MAP!r} / {_FLAT_IP!r})"
    else:
        outer = _HEADER.unpack_from(head, 4)
        inner = _HEADER.unpack_from(head, 8 + _HEADER.size)
        (count,) = struct.unpack_from("<Q", head, 2 * (4 + _HEADER.size))
        for name, (d, ntotal, _, _, _, metric) in (("IndexIDMap", outer), ("IndexFlatIP", inner)):
            if (d, ntotal, metric) != (dim, rows, _INNER_PRODUCT):
                problem = (f"its {name} header says dimension {d}, {ntotal:,} vectors, metric {metric}; expected "
                           f"{dim}, {rows:,}, inner product")
                break
        else:
            if count != rows * dim:
                problem = f"it declares {count:,} floats of vectors, not {rows:,} x {dim}"
            elif struct.unpack("<Q", id_count)[0] != rows:
                problem = f"it declares {struct.unpack('<Q', id_count)[0]:,} ids, not {rows:,}"
    if problem:
        raise RetrievalError(f"{path}: not a retrieval index adaptflow wrote ({problem}); refused before "
                             f"reading it. Rebuild it with `adaptflow run`")


def check_identity(identity: IndexIdentity, encoder: ResolvedBase, data_version: str | None, what: str) -> None:
    """Another encoder, or other data than the caller's, is an error naming both sides."""
    if identity.embedder_fingerprint != encoder.fingerprint:
        raise RetrievalError(f"{what} was built with encoder {identity.embedder} (fingerprint "
                             f"{identity.embedder_fingerprint[:12]}…), not {encoder.name} "
                             f"({encoder.fingerprint[:12]}…); use the index built with this encoder")
    if data_version is not None and identity.data_version != data_version:
        raise RetrievalError(f"{what} indexes data version {identity.data_version[:12]}… (train split md5), "
                             f"not {data_version[:12]}…; use the index built from this data version "
                             f"(the version's retrieval.data_version tag names it)")
