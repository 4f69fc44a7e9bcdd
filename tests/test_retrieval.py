"""The retrieval index (tasks/models/retrieval.py): real FAISS over the packaged MiniLM's
embeddings. Leakage guard (a train row never retrieves itself; validation and test rows are
never in the index), and an index refused for other data or another encoder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.models.base import load_base
from tasks.models.packaged import MINILM
from tasks.models.retrieval import INDEX_FILE, META_FILE, RetrievalError, RetrievalIndex

TRAIN = [("a gripping thriller with a clever twist", "positive"), ("a tense, twisty thriller", "positive"),
         ("dull and far too long", "negative"), ("boring, overlong and flat", "negative"),
         ("a warm family comedy", "positive"), ("the jokes fall flat", "negative"),
         ("stunning animation for all ages", "positive"), ("a lifeless sequel", "negative")]
# Near-copies of train rows: a guard that only compared ids of one table would still pass them.
VALIDATION = ["a gripping thriller with a clever twist!", "dull and far too long."]
TEST = ["boring, overlong and flat!!", "a warm family comedy."]


@pytest.fixture(scope="module")
def encoder():
    return load_base(MINILM)


@pytest.fixture(scope="module")
def index(encoder):
    texts, labels = map(list, zip(*TRAIN))
    return RetrievalIndex.build(encoder, texts, labels, data_version="md5-train-v1")


def test_neighbours_are_the_nearest_train_rows_and_never_the_query_itself(index):
    texts = [t for t, _ in TRAIN]
    unguarded = index.search(texts, k=2)
    assert [row[0] for row in unguarded] == list(range(len(TRAIN)))   # each text is its own nearest row...
    guarded = index.search(texts, k=2, exclude=list(range(len(TRAIN))))
    assert all(i not in row and len(row) == 2 for i, row in enumerate(guarded))   # ...unless it is excluded
    assert guarded[0][0] == 1 and guarded[2][0] == 3   # thriller -> thriller, dull/long -> boring/overlong
    assert index.neighbours(["an exciting thriller"], k=1) == [[TRAIN[0]]] or \
        index.neighbours(["an exciting thriller"], k=1) == [[TRAIN[1]]]


def test_validation_and_test_rows_are_never_retrieved(index):
    for queries in (VALIDATION, TEST, [t for t, _ in TRAIN]):
        for row in index.neighbours(queries, k=3):
            retrieved = {text for text, _ in row}
            assert retrieved <= {t for t, _ in TRAIN} and not retrieved & set(VALIDATION + TEST)


def test_a_saved_index_loads_back_and_is_refused_for_other_data_or_another_encoder(index, encoder, tmp_path,
                                                                                  tiny_bert):
    index.save(tmp_path / "index")
    again = RetrievalIndex.load(tmp_path / "index", encoder, data_version="md5-train-v1")
    assert again.search(VALIDATION, k=2) == index.search(VALIDATION, k=2) and again.identity == index.identity
    with pytest.raises(RetrievalError, match="indexes data version md5-train-v1… .*not md5-train-v2"):
        RetrievalIndex.load(tmp_path / "index", encoder, data_version="md5-train-v2")
    with pytest.raises(RetrievalError, match=f"built with encoder {MINILM}"):
        RetrievalIndex.load(tmp_path / "index", load_base(str(tiny_bert)), data_version="md5-train-v1")
    (tmp_path / "index" / INDEX_FILE).write_bytes(b"not an index")
    with pytest.raises(RetrievalError, match="not a retrieval index adaptflow wrote"):
        RetrievalIndex.load(tmp_path / "index", encoder)
    (tmp_path / "index" / META_FILE).write_text("{not json")
    with pytest.raises(RetrievalError, match="not a readable retrieval index"):
        RetrievalIndex.load(tmp_path / "index", encoder)


def test_k_must_leave_a_row_to_choose(index):
    with pytest.raises(RetrievalError, match="k=8: must be at least 1 and below the index's 8 rows"):
        index.search(["x"], k=8)


def test_retrieval_few_shot_demonstrates_only_train_examples_and_its_version_is_bound_to_its_index(
        tiny_llama, tmp_path, monkeypatch):
    """The strategy: each held-out input's demonstrations are its nearest train rows (never a
    held-out one); the saved version carries its index, and pointing it at other data is refused."""
    import json

    import pandas as pd

    from tasks.models.heads import Head
    from tasks.strategies import retrieval_few_shot_generation as rfs
    from tasks.strategies.retrieval_index import data_version

    monkeypatch.setenv("ADAPTFLOW_CACHE", str(tmp_path / "cache"))
    train = pd.DataFrame({"text": [t for t, _ in TRAIN], "target": [y for _, y in TRAIN]})
    params = rfs.variants(rfs.RetrievalFewShotParams(instruction="Label it.", k=2), train)[0]
    assert params.data_version == data_version(train, "target") and Path(params.index).is_dir()
    model = rfs.build(tiny_llama, Head("generation"), params)
    for fmt in model.prompt_formats(VALIDATION + TEST):
        assert len(fmt.demonstrations) == 2 and set(fmt.demonstrations) <= set(TRAIN)
    assert model.prompt_formats([VALIDATION[0]])[0].demonstrations[0] == TRAIN[0]   # its near-copy in train
    rfs.save(model, tmp_path / "version")
    again = rfs.load(tiny_llama, tmp_path / "version", Head("generation"), None)
    assert again.prompt_formats(TEST) == model.prompt_formats(TEST)
    config = tmp_path / "version" / rfs.CONFIG_FILE
    saved = json.loads(config.read_text())
    config.write_text(json.dumps({**saved, "data_version": "0" * 64}))
    with pytest.raises(RetrievalError, match="indexes data version .* not 000000000000"):
        rfs.load(tiny_llama, tmp_path / "version", Head("generation"), None)


def test_retrieval_few_shot_classifies_through_the_run_with_train_demonstrations_only(tiny_llama, tmp_path,
                                                                                      monkeypatch):
    """Classification through prepare_inputs/compute (the flow's own calls): each held-out
    example's prompt shows train reviews only, and the run logs what retrieval costs."""
    from dataclasses import replace

    import pandas as pd
    from conftest import ROOT

    from tasks.config import load_settings
    from tasks.strategies import registry
    from tasks.training.run import compute, prepare_inputs

    monkeypatch.setenv("ADAPTFLOW_CACHE", str(tmp_path / "cache"))
    settings = load_settings(ROOT / "params.yaml", strategies=["retrieval_few_shot"])
    params = registry.get("retrieval_few_shot").parse_params({"base": str(tiny_llama), "k": 2})
    settings = replace(settings, strategy_params={"retrieval_few_shot": params},
                       evaluation=replace(settings.evaluation, forgetting_train_examples=0,
                                          learning_curve_strategies=[]),
                       root=tmp_path)
    frames = {"train": pd.DataFrame({"text": [t for t, _ in TRAIN], "label": [y for _, y in TRAIN]}),
              "validation": pd.DataFrame({"text": VALIDATION, "label": ["positive", "negative"]}),
              "test": pd.DataFrame({"text": TEST, "label": ["negative", "positive"]})}
    inputs = prepare_inputs(settings, load_base(MINILM), frames, "retrieval_few_shot")
    outcome = compute(inputs, settings)
    for prompt in outcome.model.prompts(VALIDATION + TEST):
        shown = [line.removeprefix("Review: ") for line in prompt.splitlines() if line.startswith("Review: ")]
        assert len(shown) == 3 and set(shown[:2]) <= {t for t, _ in TRAIN}   # 2 demonstrations, then the example
    m = outcome.metrics
    assert m["index_rows"] == len(TRAIN) and m["retrieval_ms_p50"] > 0 and m["retrieval_extra_prompt_tokens"] > 10
    assert 0 <= m["test_accuracy"] <= 1 and "abstention_rate" in m


def test_a_retrieving_version_passes_the_provenance_check(tiny_llama, tmp_path, monkeypatch):
    """Its index (FAISS's own format, no pickle) is a file adaptflow writes: a registered
    retrieval version is not refused as foreign, while a pickle beside it still is."""
    import pandas as pd

    from tasks.models.heads import Head
    from tasks.strategies import retrieval_few_shot_generation as rfs
    from tasks.artifacts.provenance import CODE_LOADER, artifact_problems

    monkeypatch.setenv("ADAPTFLOW_CACHE", str(tmp_path / "cache"))
    train = pd.DataFrame({"text": [t for t, _ in TRAIN], "target": [y for _, y in TRAIN]})
    params = rfs.variants(rfs.RetrievalFewShotParams(instruction="Label it.", k=2), train)[0]
    rfs.save(rfs.build(tiny_llama, Head("generation"), params), tmp_path / "v")
    files = sorted(p.relative_to(tmp_path / "v").as_posix() for p in (tmp_path / "v").rglob("*") if p.is_file())
    assert "index/index.faiss" in files
    mlmodel = {"flavors": {"python_function": {"loader_module": CODE_LOADER,
                                               "artifacts": {"strategy": {"path": "artifacts/strategy"}}}}}
    assert artifact_problems(mlmodel, [], files + ["manifest.json"], "manifest.json") == []
    assert artifact_problems(mlmodel, [], files + ["manifest.json", "index/evil.pkl"], "manifest.json")


def test_concurrent_runs_each_build_in_their_own_folder_and_one_index_is_published(tmp_path, monkeypatch):
    """Issue 27, finding 9: two runs building the same cached index at once. Both finish saving
    before either publishes (a barrier), as happens when two strategies start together. The old
    code wrote both into one fixed `.tmp` folder and renamed it: the second rename failed
    (FileNotFoundError) after the first had published a folder the second was still writing."""
    import threading

    import pandas as pd

    from tasks.strategies.retrieval_index import train_index

    monkeypatch.setenv("ADAPTFLOW_CACHE", str(tmp_path))
    saved_to, barrier, save = [], threading.Barrier(2, timeout=60), RetrievalIndex.save

    def save_then_wait(self, folder):
        save(self, folder)
        saved_to.append(folder)
        barrier.wait()

    monkeypatch.setattr(RetrievalIndex, "save", save_then_wait)
    # Embedding itself runs one thread at a time (loading the encoder in two threads at once is
    # not what is under test); the race is in saving and publishing.
    build, one_at_a_time = RetrievalIndex.build.__func__, threading.Lock()

    def build_alone(cls, *args, **kwargs):
        with one_at_a_time:
            return build(cls, *args, **kwargs)

    monkeypatch.setattr(RetrievalIndex, "build", classmethod(build_alone))
    train = pd.DataFrame({"text": [t for t, _ in TRAIN], "label": [y for _, y in TRAIN]})
    results, errors = [], []

    def run():
        try:
            results.append(train_index(train, "label", MINILM))
        except Exception as exc:   # noqa: BLE001 - the test reports what the old code raised
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(saved_to)) == 2, saved_to   # each run wrote a folder of its own
    (folder, version), again = results
    assert again == (folder, version) and sorted(p.name for p in folder.iterdir()) == [INDEX_FILE, "index.json"]
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]   # no temporary folder left behind


def faiss_bomb(rows: int, dim: int) -> bytes:
    """82 bytes shaped like the start of an index `build` writes, claiming `rows` vectors of
    `dim` floats (and nothing after them): faiss.read_index sizes its buffer from the claim."""
    import struct

    header = struct.pack("<iqqqBi", dim, rows, 1 << 20, 1 << 20, 1, 0)
    return b"IxMp" + header + b"IxFI" + header + struct.pack("<Q", rows * dim)


def test_an_index_file_claiming_gigabytes_or_of_another_kind_is_refused_before_faiss_reads_it(index, encoder,
                                                                                              tmp_path):
    """Issue 27, finding 2. The old code handed any .faiss file of a version to faiss.read_index:
    an 82-byte file claiming 174,763 vectors of 384 floats made it allocate 256 MB before failing
    (2 GB and more with a bigger claim: docs/security.md has the measured peak memory), and an
    index of another type or dimension, or with ids past the rows, loaded."""
    import faiss
    import numpy as np

    index.save(tmp_path / "index")
    path = tmp_path / "index" / INDEX_FILE
    good = path.read_bytes()

    def refused(data: bytes, words: str):
        path.write_bytes(data)
        with pytest.raises(RetrievalError, match=words):
            RetrievalIndex.load(tmp_path / "index", encoder)

    refused(faiss_bomb(174_763, 384), r"82 bytes where 8 vectors of dimension 384 take 12,442.*refused before reading")
    # The right size, another claim inside: each header field is checked.
    refused(good[:4] + good[4:8][::-1] + good[8:], "IndexIDMap header says dimension")
    refused(good[:82 + 8 * 384 * 4] + (10**12).to_bytes(8, "little") + good[82 + 8 * 384 * 4 + 8:], "declares 1,000,000,000,000 ids")
    for other in (faiss.IndexIDMap(faiss.IndexFlatL2(384)), faiss.IndexIDMap2(faiss.IndexFlatIP(384))):
        other.add_with_ids(np.zeros((8, 384), dtype="float32"), np.arange(8, dtype="int64"))
        refused(faiss.serialize_index(other).tobytes(), "index types|metric 1")
    # Another dimension than the encoder's (the identity agreeing with the file).
    small = faiss.IndexIDMap(faiss.IndexFlatIP(4))
    small.add_with_ids(np.eye(8, 4, dtype="float32"), np.arange(8, dtype="int64"))
    meta = json.loads((tmp_path / "index" / META_FILE).read_text())
    (tmp_path / "index" / META_FILE).write_text(json.dumps({**meta, "identity": {**meta["identity"], "dim": 4}}))
    refused(faiss.serialize_index(small).tobytes(), "vectors of dimension 4, but .* embeds in 384")
    (tmp_path / "index" / META_FILE).write_text(json.dumps(meta))
    # Ids that are not the row positions: a neighbour would be a row that does not exist.
    far = faiss.IndexIDMap(faiss.IndexFlatIP(384))
    far.add_with_ids(np.zeros((8, 384), dtype="float32"), np.array([0, 1, 2, 3, 4, 5, 6, 10**9], dtype="int64"))
    refused(faiss.serialize_index(far).tobytes(), r"ids are not the row positions 0..7")
    path.write_bytes(good)
    assert RetrievalIndex.load(tmp_path / "index", encoder).search(VALIDATION, k=2) == index.search(VALIDATION, k=2)


def test_length_sorted_batches_embed_each_text_as_it_embeds_alone_in_the_callers_order():
    """embed_texts batches texts of similar length: every row is still the embedding of the text
    at that position, equal (to rounding) to the text embedded on its own, with no padding."""
    import numpy as np

    from tasks.models.embedding import embed_texts

    texts = ["a long review " * 12 + "that goes on", "short", "", "medium length text here", "short",
             "another long one " * 9, "ok"]
    together = embed_texts(texts, batch_size=3)
    alone = np.concatenate([embed_texts([t]) for t in texts])
    assert together.shape == (len(texts), 384)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert np.allclose(together[1], together[4]) and not np.allclose(together[0], together[5])
    assert embed_texts([]).shape == (0, 384)
