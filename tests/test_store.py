import numpy as np
import pytest

from docqa.chunking import Chunk
from docqa.errors import BuildLockedError, IndexNotFoundError, StoreError
from docqa.store import Store, StoreWriter

FINGERPRINT = {"embedding_model": "m", "chunk_size": 500}


def unit(rows: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, 8)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def add(writer: StoreWriter, name: str, texts: list[str], seed: int) -> np.ndarray:
    vectors = unit(len(texts), seed)
    chunks = [Chunk(name, page, text) for page, text in enumerate(texts)]
    writer.add_document(name, f"digest-{name}", len(texts), chunks, vectors, title=f"Company {name[-5]} 10-K 2022")
    return vectors


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "vectorstore"


@pytest.fixture
def built(folder):
    with StoreWriter(folder, FINGERPRINT) as writer:
        a = add(writer, "a.pdf", ["revenue grew in 2022", "the minimum guarantee is 750 million"], 1)
        b = add(writer, "sub/b.pdf", ["capital expenditure was 1577", "dividends per share"], 2)
        writer.commit()
    return a, b


def test_round_trip_documents_chunks_and_searches(folder, built):
    a, b = built
    with Store(folder) as store:
        assert [d.name for d in store.documents()] == ["a.pdf", "sub/b.pdf"]
        assert store.chunk_count() == 4
        (best_id, score), *_ = store.dense_search(b[1], 4)
        best = store.chunks([best_id])[0]
        assert (best.document, best.page_index, best.text) == ("sub/b.pdf", 1, "dividends per share")
        assert score == pytest.approx(1.0, abs=1e-5)
        lexical = store.chunks([i for i, _ in store.lexical_search('"guarantee"', 5)])
        assert [c.text for c in lexical] == ["the minimum guarantee is 750 million"]


def test_search_restricted_to_allowed_ids(folder, built):
    a, _ = built
    with Store(folder) as store:
        only_b = store.chunk_ids([d.id for d in store.documents() if d.name == "sub/b.pdf"])
        hits = store.chunks([i for i, _ in store.dense_search(a[0], 4, only_b)])
        assert {c.document for c in hits} == {"sub/b.pdf"}
        assert store.lexical_search('"guarantee"', 5, only_b) == []


def test_reader_keeps_its_snapshot_while_a_build_writes(folder, built):
    reader = Store(folder)
    with StoreWriter(folder, FINGERPRINT) as writer:
        add(writer, "c.pdf", ["new text"], 3)
        assert len(Store(folder).documents()) == 2  # uncommitted work is invisible
        writer.commit()
        assert len(reader.documents()) == 2  # an open reader keeps the state it started with
        assert len(Store(folder).documents()) == 3
    reader.close()


def test_uncommitted_work_is_rolled_back(folder, built):
    with StoreWriter(folder, FINGERPRINT) as writer:
        add(writer, "c.pdf", ["lost"], 3)
    with Store(folder) as store:
        assert len(store.documents()) == 2


def test_missing_faiss_file_is_rebuilt_from_sqlite_vectors(folder, built):
    a, _ = built
    with Store(folder) as store:
        expected = store.dense_search(a[1], 4)
    for path in folder.glob("index-*.faiss"):
        path.unlink()
    with Store(folder) as store:
        rebuilt = store.dense_search(a[1], 4)
    assert [i for i, _ in rebuilt] == [i for i, _ in expected]
    assert [s for _, s in rebuilt] == pytest.approx([s for _, s in expected])


def test_remove_and_rename(folder, built):
    with StoreWriter(folder, FINGERPRINT) as writer:
        records = {d.name: d for d in writer.documents()}
        writer.remove_document(records["a.pdf"].id)
        writer.rename_document(records["sub/b.pdf"].id, "c.pdf")
        writer.commit()
    with Store(folder) as store:
        assert [d.name for d in store.documents()] == ["c.pdf"]
        assert store.chunk_count() == 2
        assert store.vectors.index.ntotal == 2
        assert store.lexical_search('"guarantee"', 5) == []
        # The title is what the content says the document is: a new file name changes nothing of it.
        assert store.lexical_search('"c"', 5) == []
        assert len(store.lexical_search('"company b"', 5)) == 2


def test_second_build_is_refused_while_one_runs(folder, built):
    with StoreWriter(folder, FINGERPRINT):
        with pytest.raises(BuildLockedError, match="another build is running"):
            StoreWriter(folder, FINGERPRINT)


def test_changed_settings_need_rebuild(folder, built):
    with pytest.raises(StoreError, match="chunk_size 500 → 800.*--rebuild"):
        StoreWriter(folder, {**FINGERPRINT, "chunk_size": 800})
    with StoreWriter(folder, {**FINGERPRINT, "chunk_size": 800}, rebuild=True) as writer:
        assert writer.documents() == []
        add(writer, "z.pdf", ["fresh"], 4)
        writer.commit()
    with Store(folder) as store:
        assert [d.name for d in store.documents()] == ["z.pdf"]
        assert store.fingerprint["chunk_size"] == 800


def test_no_index_and_pickle_store_are_refused(folder):
    with pytest.raises(IndexNotFoundError, match="python db_build.py"):
        Store(folder)
    folder.mkdir()
    (folder / "index.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(StoreError, match="pickle"):
        Store(folder)


def test_nothing_on_disk_is_a_pickle(folder, built):
    for path in folder.iterdir():
        assert not path.read_bytes().startswith(b"\x80"), path
