import dataclasses
import json
import re
import shutil
import sqlite3
from contextlib import closing

import numpy as np
import pytest

from docqa.errors import NoDocumentsError, StoreError
from docqa.ingest import build_index
from docqa.qa import DocQA
from docqa.store import Store
from tests.support.pdfs import encrypt_pdf, write_pdf
from tests.fixtures_project import FACTS


def indexed(project) -> dict[str, int]:
    with Store(project.settings.path(project.settings.paths.vectorstore)) as store:
        return {record.name: record.chunks for record in store.documents()}


@pytest.mark.parametrize("name, page_index, sentence", FACTS)
def test_known_sentence_comes_back_from_its_page(built_fact_index, name, page_index, sentence):
    with DocQA(built_fact_index.settings, retrieval_only=True) as qa:
        top = qa.retrieve(sentence, k=1)[0]
    assert (top.document, top.page_index, top.page_number) == (name, page_index, page_index + 1)
    assert sentence in top.text.replace("\n", " ")


def test_paraphrased_question_finds_the_page_with_dense_retrieval_alone(built_fact_index):
    settings = built_fact_index.settings
    settings.retrieval.mode = "dense"
    with DocQA(settings, retrieval_only=True) as qa:
        top = qa.retrieve("How much money did Beta spend on capex?", k=1)[0]
    assert (top.document, top.page_index) == ("beta-10k.pdf", 1)


def test_rerun_with_nothing_changed_is_up_to_date(fact_project):
    first = build_index(fact_project.settings)
    assert sorted(first.added) == ["alpha-annual-report.pdf", "beta-10k.pdf"]
    assert first.pages == 6 and first.chunks == 6
    again = build_index(fact_project.settings)
    assert not again.changed and again.unchanged == 2
    assert again.summary().startswith("up to date")
    assert indexed(fact_project) == {"alpha-annual-report.pdf": 3, "beta-10k.pdf": 3}


def test_changed_deleted_renamed_and_duplicate_files(fact_project):
    build_index(fact_project.settings)
    data = fact_project.data
    write_pdf(data / "beta-10k.pdf", ["Beta rewrote its report.", "Second page.", "Third page.", "Fourth page."])
    (data / "alpha-annual-report.pdf").rename(data / "alpha renamed é.pdf")
    write_pdf(data / "gamma.pdf", ["Gamma is new."])
    shutil.copy(data / "gamma.pdf", data / "gamma-copy.pdf")
    report = build_index(fact_project.settings)
    assert report.updated == ["beta-10k.pdf"]
    assert report.renamed == ["alpha renamed é.pdf"]
    assert report.added == ["gamma-copy.pdf"] or report.added == ["gamma.pdf"]
    copy = ({"gamma.pdf", "gamma-copy.pdf"} - set(report.added)).pop()
    # Identical files are worth a note, not a skipped file: the build did everything it should.
    assert report.skipped == [] and report.notes == [f"{copy} has the same content as {report.added[0]}; indexed once"]
    again = build_index(fact_project.settings)
    assert not again.changed and again.skipped == [] and len(again.notes) == 1
    assert indexed(fact_project) == {"alpha renamed é.pdf": 3, "beta-10k.pdf": 4, report.added[0]: 1}
    (data / "beta-10k.pdf").unlink()
    report = build_index(fact_project.settings)
    assert report.removed == ["beta-10k.pdf"]
    assert "beta-10k.pdf" not in indexed(fact_project)


def test_copies_of_an_indexed_file_sorted_before_it_are_noted_against_it(fact_project):
    build_index(fact_project.settings)
    data = fact_project.data
    for copy in ("a-copy.pdf", "z-copy.pdf"):  # one sorts before beta-10k.pdf, one after
        shutil.copy(data / "beta-10k.pdf", data / copy)
    report = build_index(fact_project.settings)
    assert report.notes == ["a-copy.pdf has the same content as beta-10k.pdf; indexed once",
                            "z-copy.pdf has the same content as beta-10k.pdf; indexed once"]
    assert (report.unchanged, report.added, report.renamed) == (2, [], [])
    # every file of the folder is counted somewhere ('up to date: 2 files unchanged' of 4 said nothing of 2)
    assert report.summary().startswith("up to date: 2 files unchanged, 2 copies of an indexed file, 0 skipped")


def test_a_copy_of_a_file_that_cannot_be_read_is_skipped_as_it_is(fact_project, bad_corpus):
    """It was said to be "the same content as X, which is indexed", and X was not."""
    for name in ("cut.pdf", "cut (copy).pdf"):
        shutil.copy(bad_corpus["truncated"], fact_project.data / name)
    report = build_index(fact_project.settings)
    reasons = {skipped.name: skipped.reason for skipped in report.skipped}
    # "cut (copy).pdf" sorts first: it is the one read
    assert reasons["cut.pdf"] == f"the same content as cut (copy).pdf, which cannot be read: {reasons['cut (copy).pdf']}"
    assert "truncated" in reasons["cut (copy).pdf"] and report.duplicates == {} and report.notes == []


def test_bad_files_are_skipped_with_reasons_and_the_rest_is_indexed(fact_project, bad_corpus, tmp_path):
    for kind, path in bad_corpus.items():
        shutil.copy(path, fact_project.data / f"bad-{kind}.pdf")
    encrypt_pdf(fact_project.data / "beta-10k.pdf", fact_project.data / "beta-empty-password.pdf")
    (fact_project.data / "notes.txt").write_text("not a pdf, not indexed")
    report = build_index(fact_project.settings)
    reasons = {s.name: s.reason for s in report.skipped}
    assert set(reasons) == {f"bad-{kind}.pdf" for kind in bad_corpus}
    assert "needs OCR" in reasons["bad-scanned.pdf"]
    assert "password" in reasons["bad-encrypted.pdf"]
    assert "truncated" in reasons["bad-truncated.pdf"]
    assert "empty" in reasons["bad-zero_byte.pdf"]
    assert "not a PDF" in reasons["bad-not_pdf.pdf"]
    # An empty-password file has the same text but different bytes: it is indexed as its own document.
    assert sorted(indexed(fact_project)) == ["alpha-annual-report.pdf", "beta-10k.pdf", "beta-empty-password.pdf"]


def test_empty_or_missing_data_folder(project):
    with pytest.raises(NoDocumentsError, match=r"no PDF files in .*\(the index is left as it was\)"):
        build_index(project.settings)
    project.data.rmdir()
    with pytest.raises(NoDocumentsError, match="data folder not found"):
        build_index(project.settings)
    project.data.write_text("a file where the folder should be")
    with pytest.raises(NoDocumentsError, match="the data folder is a file: .*; set paths.data to the folder"):
        build_index(project.settings)


def test_a_changed_file_that_cannot_be_read_says_its_earlier_version_stays(fact_project, bad_corpus):
    build_index(fact_project.settings)
    before = indexed(fact_project)
    shutil.copy(bad_corpus["truncated"], fact_project.data / "beta-10k.pdf")
    report = build_index(fact_project.settings)
    (skipped,) = report.skipped
    assert skipped.name == "beta-10k.pdf" and skipped.reason.startswith("truncated PDF")
    assert skipped.reason.endswith("; its earlier version stays in the index")
    assert indexed(fact_project) == before


def test_what_is_no_pdf_at_all_is_not_read_whole_to_hash_it(fact_project, monkeypatch):
    """A 4 GB file named .pdf that is no PDF was hashed in full on every build (15.6 s each) before being skipped."""
    import docqa.ingest

    (fact_project.data / "video.pdf").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(4096))
    hashed = []
    real = docqa.ingest.file_digest
    monkeypatch.setattr(docqa.ingest, "file_digest", lambda path: hashed.append(path.name) or real(path))
    report = build_index(fact_project.settings)
    assert [(skipped.name, skipped.reason) for skipped in report.skipped] == [
        ("video.pdf", "not a PDF (no %PDF- header): another kind of file named .pdf?")]
    assert sorted(hashed) == ["alpha-annual-report.pdf", "beta-10k.pdf"]


def test_a_file_rewritten_while_it_is_read_is_left_for_the_next_build(fact_project, monkeypatch):
    """A copy over the file (a sync, a nightly cp) under the reader made pages unreadable; the file was indexed
    without them, its digest recorded, and every later build said 'up to date'."""
    import docqa.ingest

    build_index(fact_project.settings)
    data = fact_project.data
    write_pdf(data / "beta-10k.pdf", ["Beta rewrote its report.", "Second page.", "Third page.", "Fourth page."])
    real = docqa.ingest.read_pages

    def rewritten_meanwhile(path, *args, **kwargs):
        pages = real(path, *args, **kwargs)
        shutil.copy(path, f"{path}.copy")
        shutil.copy(f"{path}.copy", path)  # the same bytes, written again
        return pages

    monkeypatch.setattr(docqa.ingest, "read_pages", rewritten_meanwhile)
    report = build_index(fact_project.settings)
    (data / "beta-10k.pdf.copy").unlink()
    (skipped,) = report.skipped
    assert skipped.name == "beta-10k.pdf" and skipped.reason == (
        "it changed while it was being read (a copy or a sync under way?); the next build reads it again; its earlier "
        "version stays in the index")
    assert indexed(fact_project) == {"alpha-annual-report.pdf": 3, "beta-10k.pdf": 3}  # the earlier version
    monkeypatch.setattr(docqa.ingest, "read_pages", real)
    again = build_index(fact_project.settings)
    assert again.updated == ["beta-10k.pdf"] and again.skipped == []
    assert indexed(fact_project) == {"alpha-annual-report.pdf": 3, "beta-10k.pdf": 4}


def test_changed_chunking_needs_rebuild_and_keeps_the_old_index(fact_project):
    build_index(fact_project.settings)
    before = indexed(fact_project)
    settings = fact_project.configure(ingest={"chunk_size": 40, "chunk_overlap": 5})
    try:
        build_index(settings)
    except StoreError as error:
        assert re.search("chunk_size 500 → 40.*--rebuild", str(error))
        assert indexed(fact_project) == before
        report = build_index(settings, rebuild=True)  # while the error is alive: its build lock must be released
    else:
        pytest.fail("a changed chunk size must ask for --rebuild")
    assert report.chunks > 6
    assert sum(indexed(fact_project).values()) == report.chunks


def stored_vectors(project) -> np.ndarray:
    from docqa.store import DB_NAME, live_generation

    database = live_generation(project.settings.path(project.settings.paths.vectorstore)) / DB_NAME
    with closing(sqlite3.connect(database)) as connection:
        rows = connection.execute("SELECT vector FROM chunks ORDER BY document_id, page_index, id").fetchall()
    return np.stack([np.frombuffer(row[0], dtype=np.float32) for row in rows])


def test_int8_chunk_vectors_need_rebuild_and_still_find_the_page(fact_project):
    build_index(fact_project.settings)
    exact = stored_vectors(fact_project)
    settings = fact_project.configure(embeddings={"chunk_precision": "int8"})
    with pytest.raises(StoreError, match="embeddings.chunk_precision fp32 or bf16 → int8.*--rebuild"):
        build_index(settings)
    build_index(settings, rebuild=True)
    similarity = (stored_vectors(fact_project) * exact).sum(axis=1)
    assert 0.95 <= similarity.min() and similarity.max() < 0.99999, similarity
    settings.retrieval.mode = "dense"
    with DocQA(settings, retrieval_only=True) as qa:
        top = qa.retrieve("How much money did Beta spend on capex?", k=1)[0]
    assert (top.document, top.page_index) == ("beta-10k.pdf", 1)
    with pytest.raises(StoreError, match="embeddings.chunk_precision int8 → fp32 or bf16"):
        build_index(fact_project.configure())


def test_unreadable_file_and_symlink_loop_do_not_stop_the_build(fact_project, monkeypatch):
    import builtins

    import docqa.documents

    (fact_project.data / "loop").symlink_to(fact_project.data, target_is_directory=True)
    locked = fact_project.data / "locked report.pdf"
    write_pdf(locked, ["Nobody may read this."])
    real_open = builtins.open

    def guarded_open(path, *args, **kwargs):
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    # Running as root ignores file modes, so the refusal is simulated where documents.py opens files.
    monkeypatch.setattr(docqa.documents, "open", guarded_open, raising=False)
    report = build_index(fact_project.settings)
    assert [(s.name, s.reason) for s in report.skipped] == [("locked report.pdf", "permission denied: cannot read the file")]
    assert sorted(indexed(fact_project)) == ["alpha-annual-report.pdf", "beta-10k.pdf"]


@pytest.mark.parametrize("group_chars, steps", [(1, [1] * 6), (100_000, [3, 3])])
def test_progress_counts_every_page_and_moves_within_a_document(fact_project, monkeypatch, group_chars, steps):
    monkeypatch.setattr("docqa.ingest.EMBED_GROUP_CHARS", group_chars)
    totals, updates = [], []
    report = build_index(fact_project.settings, on_total=totals.append, progress=updates.append)
    assert totals == [report.pages] == [6]
    assert updates == steps


def refuse(monkeypatch, *, file=None, folder=None):
    """Make a file unopenable or a folder unlistable where documents.py touches them (root ignores file modes)."""
    import builtins
    import os

    import docqa.documents

    real_open, real_scandir = builtins.open, os.scandir

    def guarded_open(path, *args, **kwargs):
        if file is not None and str(path) == str(file):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    def guarded_scandir(path):
        if folder is not None and str(path) == str(folder):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(docqa.documents, "open", guarded_open, raising=False)
    monkeypatch.setattr(docqa.documents.os, "scandir", guarded_scandir)


def test_a_file_that_cannot_be_read_now_stays_in_the_index(fact_project, monkeypatch):
    build_index(fact_project.settings)
    refuse(monkeypatch, file=fact_project.data / "beta-10k.pdf")
    report = build_index(fact_project.settings)
    assert report.removed == []
    assert [(s.name, s.reason) for s in report.skipped] == [
        ("beta-10k.pdf", "permission denied: cannot read the file; its indexed copy is kept")]
    assert indexed(fact_project) == {"alpha-annual-report.pdf": 3, "beta-10k.pdf": 3}


def test_a_folder_that_cannot_be_listed_is_named_and_its_documents_stay(fact_project, monkeypatch):
    sub = fact_project.data / "filings"
    sub.mkdir()
    (fact_project.data / "beta-10k.pdf").rename(sub / "beta-10k.pdf")
    build_index(fact_project.settings)
    refuse(monkeypatch, folder=sub)
    report = build_index(fact_project.settings)
    assert report.removed == []
    assert [(s.name, s.reason) for s in report.skipped] == [
        ("filings/", "permission denied: cannot read the folder; what the index held from it is kept")]
    assert indexed(fact_project) == {"alpha-annual-report.pdf": 3, "filings/beta-10k.pdf": 3}
    monkeypatch.undo()
    (sub / "beta-10k.pdf").unlink()
    assert build_index(fact_project.settings).removed == ["filings/beta-10k.pdf"]


def test_readers_see_the_old_index_until_a_rebuild_is_complete(fact_project, monkeypatch):
    """Checked at every page of a rebuild that commits after every document: no timing involved."""
    from tests.test_crash_safety import add_filler_pdfs, assert_complete_and_answering

    add_filler_pdfs(fact_project.data, 3)
    build_index(fact_project.settings)
    monkeypatch.setattr("docqa.ingest.CHECKPOINT_SECONDS", 0.0)
    seen = []
    report = build_index(fact_project.settings, rebuild=True,
                         progress=lambda pages: seen.append(assert_complete_and_answering(fact_project.settings)))
    assert len(report.added) == 5 and len(seen) == 5  # once per document here: each is one group of pages
    assert set(seen) == {5}
    assert assert_complete_and_answering(fact_project.settings) == 5


def test_a_rebuild_keeps_what_it_cannot_read_now_from_the_index_it_replaces(fact_project, monkeypatch):
    from docqa.cli import build_main

    build_index(fact_project.settings)
    with DocQA(fact_project.settings, retrieval_only=True) as qa:
        before = qa.retrieve("capital expenditure fiscal 2022", k=1)[0]
    refuse(monkeypatch, file=fact_project.data / "beta-10k.pdf")
    report = build_index(fact_project.settings, rebuild=True)
    assert [(s.name, s.reason) for s in report.skipped] == [
        ("beta-10k.pdf", "permission denied: cannot read the file; its indexed copy is kept")]
    assert indexed(fact_project) == {"alpha-annual-report.pdf": 3, "beta-10k.pdf": 3}
    with DocQA(fact_project.settings, retrieval_only=True) as qa:
        after = qa.retrieve("capital expenditure fiscal 2022", k=1)[0]
    # The copied document's chunks get new rows in the new index; everything a reader sees of them is the same.
    assert dataclasses.replace(after, chunk_id=before.chunk_id) == before
    monkeypatch.undo()
    assert build_main(fact_project.args()) == 0  # readable again: it is what the index holds, nothing to do


def digests(project) -> dict[str, str]:
    """Indexed name → content digest, to compare with the files' own."""
    with Store(project.settings.path(project.settings.paths.vectorstore)) as store:
        return {record.name: record.digest for record in store.documents()}


def files_digests(project) -> dict[str, str]:
    from docqa.documents import file_digest

    return {path.name: file_digest(path) for path in project.data.glob("*.pdf")}


def test_names_that_rotate_or_swap_and_a_new_file_in_a_moved_ones_place(fact_project):
    """Renames met on one name (a UNIQUE constraint failed on every later build), and a new file under a moved
    document's old name removed the moved document."""
    data = fact_project.data
    build_index(fact_project.settings)

    (data / "beta-10k.pdf").rename(data / "previous.pdf")  # a rotation: latest → previous, a new file → latest
    (data / "alpha-annual-report.pdf").rename(data / "beta-10k.pdf")
    write_pdf(data / "alpha-annual-report.pdf", ["Gamma is new."])
    report = build_index(fact_project.settings)
    assert (report.added, sorted(report.renamed), report.updated, report.removed) == (
        ["alpha-annual-report.pdf"], ["beta-10k.pdf", "previous.pdf"], [], [])
    assert digests(fact_project) == files_digests(fact_project) and len(files_digests(fact_project)) == 3

    (data / "beta-10k.pdf").rename(data / "swap.tmp")  # a swap of two names
    (data / "previous.pdf").rename(data / "beta-10k.pdf")
    (data / "swap.tmp").rename(data / "previous.pdf")
    report = build_index(fact_project.settings)
    assert sorted(report.renamed) == ["beta-10k.pdf", "previous.pdf"] and not report.added + report.removed
    assert digests(fact_project) == files_digests(fact_project)
    with DocQA(fact_project.settings, retrieval_only=True) as qa:  # the passages follow their documents' names
        top = qa.retrieve("How much money did Beta spend on capex?", k=1)[0]
    assert top.document == "beta-10k.pdf"

    shutil.copy(data / "beta-10k.pdf", data / "a-copy.pdf")  # a copy, then the original replaced
    write_pdf(data / "beta-10k.pdf", ["Beta rewrote its report."])
    report = build_index(fact_project.settings)
    assert (report.renamed, report.added, report.removed) == (["a-copy.pdf"], ["beta-10k.pdf"], [])
    assert digests(fact_project) == files_digests(fact_project) and len(files_digests(fact_project)) == 4
    assert not build_index(fact_project.settings).changed


def test_a_file_name_that_is_not_utf8_is_skipped_alone(fact_project, capsys):
    """Such a name (a ZIP made on Windows, unpacked here) stopped the whole build, on every run."""
    import os

    from docqa.cli import build_main

    os.rename(fact_project.data / "beta-10k.pdf", os.fsencode(fact_project.data) + b"/Gesch\xe4ftsbericht.pdf")
    assert build_main(fact_project.args()) == 5
    out, err = capsys.readouterr()
    # its byte as \xNN, which the user can match to the file (it read Python's "\udce4"), in JSON too (jq refused it)
    assert "skipped Gesch\\xe4ftsbericht.pdf: its name is not valid UTF-8" in err and "rename the file" in err
    assert build_main(fact_project.args("--json")) == 5
    assert json.loads(capsys.readouterr().out)["skipped"][0]["name"] == "Gesch\\xe4ftsbericht.pdf"
    assert sorted(indexed(fact_project)) == ["alpha-annual-report.pdf"]
    # counted among the files it is one of ('1 file: 1 added, ... 1 skipped')
    assert out.startswith("2 files: 1 added, 0 updated, 0 renamed, 0 removed, 0 unchanged, 1 skipped;"), out


def test_a_rebuild_says_that_a_changed_file_it_cannot_read_is_left_out(fact_project):
    """An update keeps the earlier version of a changed file it cannot read, and says so; a rebuild left it out
    without a word."""
    build_index(fact_project.settings)
    beta = fact_project.data / "beta-10k.pdf"
    beta.write_bytes(beta.read_bytes()[:-200])  # cut short: a copy that did not finish
    update = build_index(fact_project.settings)
    assert [skipped.reason for skipped in update.skipped] == [
        "truncated PDF (no %%EOF end marker): copy or download it again; its earlier version stays in the index"]
    rebuild = build_index(fact_project.settings, rebuild=True)
    assert [skipped.reason for skipped in rebuild.skipped] == [
        "truncated PDF (no %%EOF end marker): copy or download it again; its earlier version is not in the rebuilt index"]
    assert sorted(indexed(fact_project)) == ["alpha-annual-report.pdf"]


def test_files_none_of_which_can_be_read_do_not_empty_the_index(fact_project, bad_corpus):
    """A folder whose only PDF was unreadable removed all the index's documents (an empty folder was refused); a
    rebuild of it said 'nothing indexed', 0 documents, while the old index, deleted files and all, stayed live."""
    build_index(fact_project.settings)
    for path in fact_project.data.iterdir():
        path.unlink()
    shutil.copy(bad_corpus["truncated"], fact_project.data / "placeholder.pdf")
    with pytest.raises(NoDocumentsError) as caught:
        build_index(fact_project.settings)
    assert str(caught.value) == (
        f"none of the files in {fact_project.data} can be read (placeholder.pdf: truncated PDF (no %%EOF end marker): "
        "copy or download it again), and every document of the index would be removed: the index is left as it "
        "was (2 documents)")
    assert indexed(fact_project) == {"alpha-annual-report.pdf": 3, "beta-10k.pdf": 3}
    rebuild = build_index(fact_project.settings, rebuild=True)
    assert rebuild.left_as_it_was and rebuild.documents == 2
    assert re.fullmatch(r"nothing indexed: 1 file skipped, none could be indexed; the index is left as it was "
                        r"\(2 documents\) \(\d+\.\d s\)", rebuild.summary()), rebuild.summary()
    assert indexed(fact_project) == {"alpha-annual-report.pdf": 3, "beta-10k.pdf": 3}
    write_pdf(fact_project.data / "gamma.pdf", ["Gamma is new."])  # one readable file: the update goes ahead
    report = build_index(fact_project.settings)
    assert report.added == ["gamma.pdf"] and sorted(report.removed) == ["alpha-annual-report.pdf", "beta-10k.pdf"]


def test_a_build_that_read_nothing_gives_no_rate(fact_project):
    build_index(fact_project.settings)
    (fact_project.data / "beta-10k.pdf").rename(fact_project.data / "beta renamed.pdf")
    summary = build_index(fact_project.settings).summary()
    assert re.fullmatch(r"2 files: 0 added, 0 updated, 1 renamed, 0 removed, 1 unchanged, 0 skipped; "
                        r"0 pages, 0 chunks in \d+\.\d s", summary), summary  # it ended "(0.0 pages/s, 0.0 chunks/s)"



@pytest.mark.parametrize("extractor", ["pypdfium2", "pypdf"])
def test_a_page_that_cannot_be_read_leaves_the_others_indexed_under_their_own_numbers(fact_project, extractor):
    """One damaged page (its entry in the page tree names no object) dropped the whole document with pypdfium2;
    pypdf passes over such a page without a word, and the pages after it were cited one number too low."""
    sentences = ["Delta's revenue was 41 million.", "Delta's profit was 7 million.", "Delta's margin was 17 percent."]
    pdf = write_pdf(fact_project.data / "delta.pdf", sentences)
    pdf.write_bytes(pdf.read_bytes().replace(b"/Kids [5 0 R 7 0 R 9 0 R]", b"/Kids [5 0 R 42 0 R 9 0 R]"))
    settings = fact_project.settings
    settings.ingest.extractor = extractor
    report = build_index(settings)
    assert report.skipped == [] and "delta.pdf" in report.added
    if extractor == "pypdfium2":
        assert "delta.pdf: page 2 (PdfiumError) cannot be read (damaged); indexed without it" in report.notes
        with DocQA(settings, retrieval_only=True) as qa:
            top = qa.retrieve("What was Delta's margin?", k=1)[0]
        assert (top.document, top.page_number) == ("delta.pdf", 3)
    else:
        assert ("delta.pdf: the pypdf extractor reads 2 of its 3 pages, so pages may be cited by the wrong number; "
                "ingest.extractor pypdfium2 reads them all") in report.notes

def chunk_titles(project) -> dict[str, set[str]]:
    """Each indexed document's chunk titles (its label from its first page), as BM25 searches them."""
    from docqa.store import live_generation

    folder = live_generation(project.settings.path(project.settings.paths.vectorstore))
    with closing(sqlite3.connect(folder / "docqa.sqlite")) as database:
        rows = database.execute("SELECT d.name, f.title FROM chunks c JOIN chunks_fts f ON f.rowid = c.id "
                                "JOIN documents d ON d.id = c.document_id")
        titles: dict[str, set[str]] = {}
        for name, title in rows:
            titles.setdefault(name, set()).add(title)
    return titles


def test_broken_links_keep_what_the_index_holds_from_them(fact_project, tmp_path):
    """A file or folder linked from a drive that is not mounted now: its documents were removed without a word."""
    drive = tmp_path / "drive"
    (drive / "reports").mkdir(parents=True)
    (fact_project.data / "beta-10k.pdf").rename(drive / "reports" / "beta-10k.pdf")
    # A cover page docqa reads a label from ("10-K 2022"), which BM25 searches with every chunk.
    write_pdf(drive / "gamma.pdf", ["GAMMA CORPORATION\nFORM 10-K\nAnnual report for the fiscal year ended "
                                    "December 31, 2022", "Gamma is new."])
    (fact_project.data / "reports").symlink_to(drive / "reports")
    (fact_project.data / "gamma-link.pdf").symlink_to(drive / "gamma.pdf")
    (fact_project.data / "notes.txt").symlink_to(drive / "gone.txt")  # leads nowhere, but nothing indexed is there
    build_index(fact_project.settings)
    before = indexed(fact_project)
    assert sorted(before) == ["alpha-annual-report.pdf", "gamma-link.pdf", "reports/beta-10k.pdf"]
    drive.rename(tmp_path / "unmounted")
    report = build_index(fact_project.settings)
    assert report.removed == [] and indexed(fact_project) == before
    assert sorted((s.name, s.reason) for s in report.skipped) == [
        ("gamma-link.pdf", f"a link to {drive / 'gamma.pdf'}, which cannot be reached now; its indexed copy is kept"),
        ("reports/", f"a link to {drive / 'reports'}, which cannot be reached now; what the index held from it is kept"),
    ]
    titles = chunk_titles(fact_project)
    assert "10-K 2022" in " ".join(titles["gamma-link.pdf"])
    report = build_index(fact_project.settings, rebuild=True)  # carried over from the index it replaces
    assert indexed(fact_project) == before
    assert chunk_titles(fact_project) == titles  # with the labels BM25 searches (they were dropped)
    assert sorted((s.name, s.reason.rsplit("; ", 1)[1]) for s in report.skipped) == [
        ("gamma-link.pdf", "its indexed copy is kept"), ("reports/", "what the index held from it is kept")]

    # A readable copy of a document that is kept from the drive: indexed once, from the copy (it failed on the
    # index's unique digests).
    shutil.copy(tmp_path / "unmounted" / "reports" / "beta-10k.pdf", fact_project.data / "beta-copy.pdf")
    report = build_index(fact_project.settings, rebuild=True)
    assert sorted(indexed(fact_project)) == ["alpha-annual-report.pdf", "beta-copy.pdf", "gamma-link.pdf"]

    # With other settings nothing can come over, and the rebuild says so for the folder too.
    (fact_project.data / "beta-copy.pdf").unlink()
    (tmp_path / "unmounted").rename(drive)
    build_index(fact_project.settings)
    assert "reports/beta-10k.pdf" in indexed(fact_project)
    drive.rename(tmp_path / "unmounted")
    report = build_index(fact_project.configure(ingest={"chunk_size": 400}), rebuild=True)
    reasons = {skipped.name: skipped.reason for skipped in report.skipped}
    assert reasons["reports/"].endswith("; nothing from it is in the rebuilt index")
    assert sorted(indexed(fact_project)) == ["alpha-annual-report.pdf"]


def test_chunks_longer_than_the_embedding_model_reads_are_noted(project):
    """A chunk_size past the model's 256 tokens left most of each chunk out of the search by meaning, unsaid."""
    figures = " ".join(f"{year} revenue {year * 7:,} thousand, margin {year % 97}.{year % 10} %" for year in range(1900, 2030))
    write_pdf(project.data / "figures.pdf", [figures[:2500], figures[2500:5000]])
    report = build_index(project.configure(ingest={"chunk_size": 2000, "chunk_overlap": 100}))
    noted = [note for note in report.notes if "longer than the embedding model reads" in note]
    counted = re.match(r"(\d+) of the (\d+) chunks indexed", noted[0]) if len(noted) == 1 else None
    assert counted and int(counted[2]) == report.chunks and int(counted[1]) / report.chunks > 0.1, report.notes
    assert "(256 tokens)" in noted[0] and "ingest.chunk_size" in noted[0]
    report = build_index(project.configure(ingest={"chunk_size": 300, "chunk_overlap": 30}), rebuild=True)
    assert report.chunks > 10 and not [note for note in report.notes if "embedding model" in note], report.notes


def test_nothing_readable_says_nothing_was_indexed(project, bad_corpus, capsys):
    import os

    from docqa.cli import build_main

    shutil.copy(bad_corpus["scanned"], project.data / "scan.pdf")
    assert build_main(project.args()) == 5
    assert capsys.readouterr().out.startswith("nothing indexed: 1 file skipped, none could be indexed")
    (project.data / "scan.pdf").unlink()
    write_pdf(project.data / "report.pdf", ["Gamma is new."])
    assert build_main(project.args()) == 0
    os.rename(project.data / "report.pdf", os.fsencode(project.data) + b"/r\xe9sum\xe9.pdf")
    capsys.readouterr()
    # the only file renamed to a name that cannot be indexed: said, and the index not emptied for it
    assert build_main(project.args()) == 4
    err = capsys.readouterr().err
    assert "(r\\xe9sum\\xe9.pdf: its name is not valid UTF-8" in err and "the index is left as it was (1 document)" in err


def test_an_unreadable_data_folder_is_named_as_such(project, monkeypatch):
    import os

    real_scandir = os.scandir

    def guarded_scandir(path):
        if str(path) == str(project.data):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", guarded_scandir)  # root ignores file modes
    with pytest.raises(NoDocumentsError, match=r"cannot read the data folder .* \(Permission denied\); make it readable"):
        build_index(project.settings)


def test_ctrl_c_keeps_the_documents_finished_before_it(fact_project, monkeypatch, capsys):
    """An update interrupted between checkpoints lost every document finished since the last (30 s)."""
    import os
    import signal

    import docqa.ingest
    from docqa.cli import build_main
    from docqa.ingest import BuildInterrupted

    write_pdf(fact_project.data / "gamma.pdf", ["Gamma is new."])
    real_embed = docqa.ingest._chunk_and_embed
    embedded = []

    def interrupted_at_the_second(pages, *args):
        if embedded:
            raise KeyboardInterrupt  # Ctrl-C while the second document is read
        embedded.append(pages[0].document)
        return real_embed(pages, *args)

    monkeypatch.setattr(docqa.ingest, "_chunk_and_embed", interrupted_at_the_second)
    assert build_main(fact_project.args()) == 130
    assert capsys.readouterr().out.startswith("interrupted: what was done before it is kept (1 added, 0 updated")
    assert list(indexed(fact_project)) == embedded == ["alpha-annual-report.pdf"]

    current = fact_project.settings.path(fact_project.settings.paths.vectorstore) / "CURRENT"
    live = current.read_text()
    with pytest.raises(KeyboardInterrupt) as caught:  # a rebuild stopped early keeps the whole old index instead
        embedded.clear()
        build_index(fact_project.settings, rebuild=True)
    assert not isinstance(caught.value, BuildInterrupted)
    assert current.read_text() == live and list(indexed(fact_project)) == ["alpha-annual-report.pdf"]
    embedded.clear()  # on the command line it says what became of the index (it said "interrupted" alone)
    assert build_main(fact_project.args("--rebuild")) == 130
    assert ("interrupted: the rebuild was stopped before it finished; the index is as it was before it"
            in capsys.readouterr().err)
    assert current.read_text() == live
    embedded.clear()  # with --json, the object an interrupted update prints (it printed nothing)
    assert build_main(fact_project.args("--rebuild", "--json")) == 130
    report = json.loads(capsys.readouterr().out)
    assert report["interrupted"] is True and report["added"] == [] and report["documents"] is None
    assert report["notes"] == ["the rebuild was stopped before it finished; the index is as it was before it"]

    def stopped_while_hashing(path):
        raise KeyboardInterrupt

    # an update stopped while it still finds and hashes the files said "interrupted" alone, and with --json printed
    # no object at all
    monkeypatch.setattr(docqa.ingest, "file_digest", stopped_while_hashing)
    assert build_main(fact_project.args("--json")) == 130
    out, err = capsys.readouterr()
    assert "interrupted: the build was stopped before it changed anything; the index is as it was" in err
    assert json.loads(out)["interrupted"] is True and current.read_text() == live

    monkeypatch.undo()
    real_add = docqa.store.StoreWriter.add_document

    def add_with_ctrl_c_in_the_middle(self, name, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the document's rows are written: they go in whole
        return real_add(self, name, *args, **kwargs)

    monkeypatch.setattr(docqa.store.StoreWriter, "add_document", add_with_ctrl_c_in_the_middle)
    with pytest.raises(BuildInterrupted) as caught:
        build_index(fact_project.settings)
    assert caught.value.report.added == ["beta-10k.pdf"]
    monkeypatch.undo()
    assert sorted(indexed(fact_project)) == ["alpha-annual-report.pdf", "beta-10k.pdf"]

    real_commit = docqa.store.StoreWriter.commit

    def commit_with_ctrl_c(self):
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the last commit writes: held back until it is done
        return real_commit(self)

    monkeypatch.setattr(docqa.store.StoreWriter, "commit", commit_with_ctrl_c)
    with pytest.raises(BuildInterrupted) as caught:  # with its report: every document was kept
        build_index(fact_project.settings)
    assert caught.value.report.added == ["gamma.pdf"] and caught.value.report.documents == 3
    assert caught.value.report.summary().endswith("; nothing was left to do (%.1f s)" % caught.value.report.seconds)
    monkeypatch.undo()
    assert sorted(indexed(fact_project)) == ["alpha-annual-report.pdf", "beta-10k.pdf", "gamma.pdf"]



@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_kill_or_a_closed_terminal_keeps_what_was_built_as_ctrl_c_does(fact_project, monkeypatch, capsys, signum):
    """kill (SIGTERM) or closing the terminal (SIGHUP) ended a build with no word, losing every document finished
    since the last checkpoint; a signal that arrives while a document is written waits until it is in whole."""
    import os
    import signal

    import docqa.ingest
    import docqa.store
    from docqa.cli import build_main

    number = getattr(signal, signum)
    write_pdf(fact_project.data / "gamma.pdf", ["Gamma is new."])
    real_add = docqa.store.StoreWriter.add_document

    def add_with_a_signal(self, name, *args, **kwargs):
        if name == "beta-10k.pdf":
            os.kill(os.getpid(), number)  # arrives while beta's rows are written: they go in whole, then it stops
        return real_add(self, name, *args, **kwargs)

    monkeypatch.setattr(docqa.store.StoreWriter, "add_document", add_with_a_signal)
    assert build_main(fact_project.args()) == 128 + number
    out = capsys.readouterr().out
    assert out.startswith("interrupted: what was done before it is kept (2 added, 0 updated"), out
    assert sorted(indexed(fact_project)) == ["alpha-annual-report.pdf", "beta-10k.pdf"]
    assert signal.getsignal(number) is signal.SIG_DFL  # put back
    monkeypatch.undo()
    assert build_main(fact_project.args()) == 0  # the next build finishes the rest
    assert sorted(indexed(fact_project)) == ["alpha-annual-report.pdf", "beta-10k.pdf", "gamma.pdf"]

def test_a_build_that_ignores_ctrl_c_goes_on_ignoring_it(fact_project, monkeypatch):
    """A script's `db_build.py &` ignores SIGINT; holding it back while a document was written made it count."""
    import os
    import signal

    import docqa.store

    real_add = docqa.store.StoreWriter.add_document

    def add_with_ctrl_c(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(docqa.store.StoreWriter, "add_document", add_with_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        report = build_index(fact_project.settings)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sorted(report.added) == ["alpha-annual-report.pdf", "beta-10k.pdf"] and not report.interrupted
