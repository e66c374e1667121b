import os
import re
import subprocess
import sys

import numpy as np
import pytest

from docqa.chunking import Chunk
from docqa.errors import BuildLockedError, IndexNotFoundError, StoreError
from docqa.store import Store, StoreWriter
from tests.support.commands import ROOT
from tests.support.read_only import read_only, skip_if_not_mounted, writable_again

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


def test_page_openings_give_each_page_s_chunks_and_its_first_text(folder, built):
    with StoreWriter(folder, FINGERPRINT) as writer:
        chunks = [Chunk("c.pdf", 0, "Balance sheet 2022"), Chunk("c.pdf", 0, "Total assets 7,170"), Chunk("c.pdf", 1, "Notes")]
        writer.add_document("c.pdf", "digest-c", 2, chunks, unit(3, 3), title="Company c 10-K 2022")
        writer.commit()
    with Store(folder) as store:
        ids = {d.name: d.id for d in store.documents()}
        pages = store.page_openings([ids["c.pdf"], ids["a.pdf"]])
        by_page = {(page.document_id, page.page_index): page for page in pages}
        assert len(pages) == 4
        first = by_page[(ids["c.pdf"], 0)]
        assert first.text == "Balance sheet 2022" and len(first.chunk_ids) == 2
        assert [c.text for c in store.chunks(list(first.chunk_ids))] == ["Balance sheet 2022", "Total assets 7,170"]
        assert by_page[(ids["a.pdf"], 1)].text == "the minimum guarantee is 750 million"
        assert store.page_openings([ids["sub/b.pdf"]])[0].document_id == ids["sub/b.pdf"]


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
    for path in folder.glob("**/index-*.faiss"):
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
        writer.publish()
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
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert any(path.name.endswith(".faiss") for path in files)
    for path in files:
        assert not path.read_bytes().startswith(b"\x80"), path


def names(folder) -> list[str]:
    with Store(folder) as store:
        return [d.name for d in store.documents()]


def test_a_rebuild_is_invisible_until_it_is_published_whole(folder, built):
    reader = Store(folder)
    with StoreWriter(folder, FINGERPRINT, rebuild=True) as writer:
        add(writer, "c.pdf", ["the first rebuilt document"], 3)
        writer.commit()  # a checkpoint: durable, but readers keep the old index
        assert names(folder) == ["a.pdf", "sub/b.pdf"]
        add(writer, "d.pdf", ["the second rebuilt document"], 4)
        writer.commit()
        assert names(folder) == ["a.pdf", "sub/b.pdf"]
        writer.publish()
        assert names(folder) == ["c.pdf", "d.pdf"]
    assert [d.name for d in reader.documents()] == ["a.pdf", "sub/b.pdf"]  # an open reader keeps its snapshot
    assert reader.chunk_count() == 4 and reader.vectors.count == 4
    reader.close()
    with Store(folder) as store:
        assert store.vectors.count == store.chunk_count() == 2


def test_a_rebuild_that_stops_before_publishing_leaves_the_old_index_and_its_leftover_goes(folder, built):
    script = (
        "import os, signal, sys\n"
        "import numpy as np\n"
        "from docqa.chunking import Chunk\n"
        "from docqa.store import StoreWriter\n"
        "writer = StoreWriter(__import__('pathlib').Path(sys.argv[1]), {'embedding_model': 'm', 'chunk_size': 500}, rebuild=True)\n"
        "writer.add_document('c.pdf', 'digest-c', 1, [Chunk('c.pdf', 0, 'partial')], np.eye(1, 8, dtype=np.float32))\n"
        "writer.commit()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    assert subprocess.run([sys.executable, "-c", script, str(folder)]).returncode == -9
    assert names(folder) == ["a.pdf", "sub/b.pdf"]
    with Store(folder) as store:
        assert store.vectors.count == store.chunk_count() == 4
    before = set(folder.iterdir())
    with StoreWriter(folder, FINGERPRINT) as writer:
        assert [d.name for d in writer.documents()] == ["a.pdf", "sub/b.pdf"]
    assert len(set(folder.iterdir())) == len(before) - 1, "the next build removes the rebuild's leftover"


def test_questions_with_changed_settings_are_refused_naming_the_change_and_the_fix(folder, built):
    with Store(folder, FINGERPRINT) as store:
        assert store.documents()
    with pytest.raises(StoreError, match=r"ingest.chunk_size 500 → 800\); run: python db_build.py --rebuild"):
        Store(folder, {**FINGERPRINT, "chunk_size": 800})


def live_database(folder):
    (database,) = folder.glob("**/docqa.sqlite")
    return database


def test_a_damaged_faiss_file_of_the_right_size_is_not_used(folder, built, caplog):
    a, _ = built
    with Store(folder) as store:
        expected = store.dense_search(a[1], 4)
    (faiss_file,) = folder.glob("**/index-*.faiss")
    data = bytearray(faiss_file.read_bytes())
    data[-64:] = b"\x7f" * 64  # vectors overwritten by floats near 3e38; the size is unchanged
    faiss_file.write_bytes(bytes(data))
    with Store(folder) as store:
        searched = store.dense_search(a[1], 4)
    assert searched == [(i, pytest.approx(s, abs=1e-5)) for i, s in expected]
    assert "does not match the index" in caplog.text
    with StoreWriter(folder, FINGERPRINT) as writer:
        assert writer.needs_repair
        writer.commit()  # a build writes it again
    caplog.clear()
    with Store(folder) as store:
        assert [i for i, _ in store.dense_search(a[1], 4)] == [i for i, _ in expected]
    assert "does not match" not in caplog.text


@pytest.mark.parametrize("damage", ["header", "middle page"])
def test_a_damaged_database_is_reported_and_a_rebuild_moves_it_aside(folder, built, damage):
    import sqlite3

    database = live_database(folder)
    with sqlite3.connect(database) as connection:
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(database.read_bytes())
    assert len(data) >= 4 * page_size
    if damage == "header":
        data[:100] = b"\x00" * 100
    else:
        for page in range(2, len(data) // page_size):
            data[page * page_size: page * page_size + 100] = b"\xff" * 100
    database.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged.*run: python db_build.py --rebuild"):
        with Store(folder) as store:
            store.documents(), store.chunks(list(range(1, 5))), store.lexical_search('"guarantee"', 5)
    with pytest.raises(StoreError, match="damaged.*run: python db_build.py --rebuild"):
        StoreWriter(folder, FINGERPRINT)  # an update, which would find every document unchanged, says so too
    assert database.read_bytes() == bytes(data)
    with StoreWriter(folder, FINGERPRINT, rebuild=True) as writer:
        add(writer, "fresh.pdf", ["fresh"], 5)
        writer.commit()
        writer.publish()
    (note,) = writer.notes
    (aside,) = folder.glob("damaged-*")
    assert f"the damaged index (or another program's database under its name) was moved to {aside}" in note
    assert (aside / "docqa.sqlite").read_bytes() == bytes(data)
    assert names(folder) == ["fresh.pdf"]


def test_queries_never_write_to_the_index(folder, built):
    import sqlite3

    with Store(folder) as store:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store._db.execute("CREATE TABLE written(x)")


def test_many_threads_share_one_store(folder, built):
    from concurrent.futures import ThreadPoolExecutor

    a, b = built
    with Store(folder) as store:
        def search(round: int) -> tuple:
            vector = (a, b)[round % 2][round % 2]
            ids = [i for i, _ in store.dense_search(vector, 1)]
            lexical = [c.text for c in store.chunks([i for i, _ in store.lexical_search('"guarantee"', 5)])]
            return store.chunks(ids)[0].text, lexical, len(store.documents())

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(search, range(800)))
    expected = {0: "revenue grew in 2022", 1: "dividends per share"}
    assert all(result == (expected[n % 2], ["the minimum guarantee is 750 million"], 2) for n, result in enumerate(results))


def test_a_read_only_index_folder_can_be_queried(folder, built):

    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from docqa.store import Store\n"
        "with Store(Path(sys.argv[1]), {'embedding_model': 'm', 'chunk_size': 500}) as store:\n"
        "    print([d.name for d in store.documents()], store.vectors.count, store.lexical_search('\"guarantee\"', 5))\n"
    )
    try:
        result = subprocess.run(read_only(folder, [sys.executable, "-c", script, str(folder)]), capture_output=True,
                                text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    finally:
        writable_again(folder)
    skip_if_not_mounted(result.returncode, result.stderr)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("['a.pdf', 'sub/b.pdf'] 4 [(2, "), result.stdout  # chunk 2 holds "guarantee"



def test_a_reader_of_a_read_only_index_folder_sees_the_owner_s_builds(folder, built):
    """A server run by a user who may only read the index folder: the owner's ``python db_build.py`` moves the index
    on, and the reader's look (``Store.is_current``) must see it, reading the folder as the store opens it (it
    answered 'current' forever). Root ignores file modes, so the reader runs in a namespace where the folder is
    mounted read-only, while this process, outside it, builds."""

    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from docqa.store import Store\n"
        "folder = Path(sys.argv[1])\n"
        "store = Store(folder)\n"
        "print('before', store.is_current(), flush=True)\n"
        "sys.stdin.readline()\n"
        "print('after', store.is_current(), flush=True)\n"
        "with Store(folder) as again:\n"
        "    print('reopened', [d.name for d in again.documents()], flush=True)\n"
    )
    reader = subprocess.Popen(read_only(folder, [sys.executable, "-c", script, str(folder)]), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    try:
        first = reader.stdout.readline()
        if not first:
            reader.wait(timeout=120)
            error = reader.stderr.read()
            skip_if_not_mounted(reader.returncode, error)
            raise AssertionError(error)
        assert first == "before True\n"
        writable_again(folder)  # the owner writes (the mount is read-only for the reader alone)
        with StoreWriter(folder, FINGERPRINT) as writer:
            add(writer, "c.pdf", ["a third document"], 3)
            writer.commit()
        out, err = reader.communicate("\n", timeout=120)
    finally:
        if reader.poll() is None:
            reader.kill()
        writable_again(folder)
    assert reader.returncode == 0, err
    assert out.splitlines() == ["after False", "reopened ['a.pdf', 'c.pdf', 'sub/b.pdf']"], out

def test_folders_in_the_index_folder_that_docqa_did_not_write_are_never_deleted(folder, built):
    """A build removed every store-* folder but the live one: with paths.vectorstore pointed at the data folder
    (or at the project), the user's store-2021/ of PDFs went."""
    mine = {folder / "store-2021" / "report.pdf": b"%PDF-1.4 the user's", folder / "store-locations" / "notes.txt": b"x",
            folder / "store-9" / "docqa.sqlite": b"a store-9 with something else in it",
            folder / "store-9" / "notes.txt": b"the user's"}
    for path, content in mine.items():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
    leftover = folder / "store-8"  # an interrupted rebuild's generation: docqa's own files only
    leftover.mkdir()
    (leftover / "docqa.sqlite").write_bytes(b"")
    (leftover / "index-1.faiss.tmp").write_bytes(b"")
    for rebuild in (False, True):
        with StoreWriter(folder, FINGERPRINT, rebuild=rebuild) as writer:
            add(writer, "c.pdf", ["a third document"], 3)
            writer.commit()
            writer.publish()
        assert all(path.read_bytes() == content for path, content in mine.items())
        assert not leftover.exists()
    assert (folder / "CURRENT").read_text() == "store-2022"  # numbered past every store-<n> there, never into one
    with Store(folder) as store:
        assert [d.name for d in store.documents()] == ["c.pdf"]


def test_current_naming_a_missing_generation_is_damage_and_a_rebuild_moves_the_rest_aside(folder, built):
    (folder / "CURRENT").write_text("store-7")  # a partial restore, or store-7 deleted by hand
    message = "names store-7, which holds no index (moved or deleted by hand?); run: python db_build.py --rebuild"
    with pytest.raises(StoreError, match=re.escape(message)):
        Store(folder)
    with pytest.raises(StoreError, match=re.escape(message)):
        StoreWriter(folder, FINGERPRINT)
    assert (folder / "store-1" / "docqa.sqlite").is_file()  # a plain build deleted the real index here
    with StoreWriter(folder, FINGERPRINT, rebuild=True) as writer:
        add(writer, "c.pdf", ["a third document"], 3)
        writer.commit()
        writer.publish()
    (aside,) = folder.glob("damaged-*")
    assert (aside / "store-1" / "docqa.sqlite").is_file()
    assert writer.notes == [f"CURRENT named no index: what the index folder held was moved to {aside}; "
                            f"delete it when you no longer need it"]
    with Store(folder) as store:
        assert [d.name for d in store.documents()] == ["c.pdf"]


def test_a_rebuild_deletes_only_the_index_s_own_files(folder, built):
    """The old generation went whole (rmtree), and an index from before generations took every index-* file of
    its folder with it: a user's index-2023.pdf there went."""
    (folder / "store-1" / "notes.txt").write_text("the user's")
    (folder / "store-²").mkdir()  # not a generation number: crashed every first build and rebuild
    with StoreWriter(folder, FINGERPRINT, rebuild=True) as writer:
        add(writer, "c.pdf", ["a third document"], 3)
        writer.commit()
        writer.publish()
    assert (folder / "store-1" / "notes.txt").read_text() == "the user's"
    assert sorted(path.name for path in (folder / "store-1").iterdir()) == ["notes.txt"]
    assert (folder / "store-²").is_dir() and (folder / "CURRENT").read_text() == "store-2"

    legacy = folder.parent / "legacy"  # an index from before generations: its files in the folder itself
    (folder / "store-2").rename(legacy)
    (legacy / "index-2023.pdf").write_bytes(b"%PDF- the user's")
    with StoreWriter(legacy, FINGERPRINT, rebuild=True) as writer:
        add(writer, "d.pdf", ["a fourth document"], 4)
        writer.commit()
        writer.publish()
    assert (legacy / "index-2023.pdf").read_bytes() == b"%PDF- the user's"
    assert not (legacy / "docqa.sqlite").exists()
    with Store(legacy) as store:
        assert [d.name for d in store.documents()] == ["d.pdf"]


def test_another_program_s_database_under_the_index_s_name_is_not_written_to(folder, built):
    import sqlite3

    (folder / "store-7").mkdir()
    with sqlite3.connect(folder / "store-7" / "docqa.sqlite") as database:
        database.execute("CREATE TABLE expenses(amount)")
    (folder / "store-7" / "notes.txt").write_text("the user's")
    before = (folder / "store-7" / "docqa.sqlite").read_bytes()
    (folder / "CURRENT").write_text("store-7")
    with pytest.raises(StoreError, match="store-7/docqa.sqlite is not a docqa index \\(it has a table 'expenses'\\)"):
        StoreWriter(folder, FINGERPRINT)
    # Not even switched to WAL: byte for byte as it was.
    assert (folder / "store-7" / "docqa.sqlite").read_bytes() == before
    assert sorted(path.name for path in (folder / "store-7").iterdir()) == ["docqa.sqlite", "notes.txt"]
    with StoreWriter(folder, FINGERPRINT, rebuild=True) as writer:  # the advice: the database is moved aside, kept
        add(writer, "c.pdf", ["a third document"], 3)
        writer.commit()
        writer.publish()
    (aside,) = folder.glob("damaged-*")
    assert (aside / "docqa.sqlite").read_bytes() == before
    assert "was moved to" in writer.notes[0]
    assert [path.name for path in (folder / "store-7").iterdir()] == ["notes.txt"]  # the user's stays, not moved
