"""The store seam: ingestion, retrieval and the commands work through storage's factory and protocols, shown with a
second store (tests/support/memory_store.py) that shares nothing with SQLite + FAISS."""

from __future__ import annotations

import pytest

from docqa.cli import main
from docqa.errors import ConfigError
from docqa.ingest import build_index
from docqa.qa import DocQA
from docqa.storage import STORES, IndexReader, IndexWriter, open_reader, open_writer
from docqa.store import Store, StoreWriter
from tests.support import memory_store

QUESTION = "How much is the minimum guarantee payable by adidas?"


@pytest.fixture
def memory_project(fact_project, monkeypatch):
    monkeypatch.setitem(STORES, "memory", memory_store.memory_backend)
    monkeypatch.setattr(memory_store, "COMMITTED", {})
    fact_project.configure(store={"backend": "memory"})
    return fact_project


def test_build_and_ask_through_a_second_store(memory_project):
    settings = memory_project.settings
    report = build_index(settings)
    assert (len(report.added), report.chunks) == (2, 6)
    assert not (memory_project.root / "vectorstore").exists()  # nothing of SQLite + FAISS was made
    with DocQA(settings, retrieval_only=True) as qa:
        assert isinstance(qa.store, memory_store.MemoryReader)
        answer = qa.ask(QUESTION, k=1)
        scoped = qa.ask("How many people are employed?", doc="beta*", k=2)
    top = answer.sources[0]
    assert (top.document, top.page_number) == ("alpha-annual-report.pdf", 2)
    assert "seven hundred and fifty million pounds" in top.text
    assert {source.document for source in scoped.sources} == {"beta-10k.pdf"}


def test_updates_go_through_the_writer_side(memory_project):
    settings = memory_project.settings
    build_index(settings)
    assert build_index(settings).summary().startswith("up to date")
    (memory_project.data / "alpha-annual-report.pdf").rename(memory_project.data / "alpha-2022.pdf")
    (memory_project.data / "beta-10k.pdf").unlink()
    report = build_index(settings)
    assert (report.renamed, report.removed, report.added) == (["alpha-2022.pdf"], ["beta-10k.pdf"], [])
    with open_reader(settings) as reader:
        assert [record.name for record in reader.documents()] == ["alpha-2022.pdf"]
        assert {chunk.document for chunk in reader.chunks(reader.chunk_ids([reader.documents()[0].id]))} == {
            "alpha-2022.pdf"}


def test_a_rebuild_goes_through_the_writer_side(memory_project, monkeypatch):
    """A rebuild replaces the index whole, keeping from the old one what cannot be read now: the writer side names
    that index's documents and carries them over, in any store."""
    from tests.test_ingest import refuse

    settings = memory_project.settings
    build_index(settings)
    with DocQA(settings, retrieval_only=True) as qa:
        before = qa.ask(QUESTION, k=1).sources[0]
    with monkeypatch.context() as unreadable:
        refuse(unreadable, file=memory_project.data / "beta-10k.pdf")
        report = build_index(settings, rebuild=True)
    assert (report.added, report.documents) == (["alpha-annual-report.pdf"], 2)
    assert [(s.name, s.reason) for s in report.skipped] == [
        ("beta-10k.pdf", "permission denied: cannot read the file; its indexed copy is kept")]
    with open_reader(settings) as reader:
        assert {record.name: record.chunks for record in reader.documents()} == {
            "alpha-annual-report.pdf": 3, "beta-10k.pdf": 3}
    with DocQA(settings, retrieval_only=True) as qa:
        after = qa.ask(QUESTION, k=1).sources[0]
        carried = qa.ask("How many people are employed?", doc="beta*", k=1).sources
    assert (after.document, after.page_number, after.text) == (before.document, before.page_number, before.text)
    assert [source.document for source in carried] == ["beta-10k.pdf"]
    assert build_index(settings).summary().startswith("up to date")  # what was carried over is the file as it is


def test_a_store_lacking_a_method_cannot_be_made():
    """A store written without one of the methods a build calls fails where it is made, naming what it lacks, not
    halfway through a build (a rebuild calls replaced_names and carry_over only)."""

    class Incomplete(IndexWriter):
        def documents(self):
            return []

    with pytest.raises(TypeError, match="abstract methods .*carry_over.*replaced_names"):
        Incomplete()


def test_the_list_command_reads_the_configured_store(memory_project, capsys):
    build_index(memory_project.settings)
    assert main(["list", "--config", str(memory_project.config)]) == 0
    assert capsys.readouterr().out.strip().endswith("2 documents, 6 pages, 6 chunks")


def test_both_stores_implement_both_sides(memory_project, built_fact_index):
    build_index(memory_project.settings)
    for settings in (memory_project.settings, built_fact_index.settings):
        with open_reader(settings) as reader:
            assert isinstance(reader, IndexReader)
    with open_writer(memory_project.settings, {}, rebuild=True) as writer:
        assert isinstance(writer, IndexWriter) and isinstance(writer, memory_store.MemoryWriter)
    assert STORES["sqlite-faiss"]().reader is Store and STORES["sqlite-faiss"]().writer is StoreWriter


def test_both_stores_give_the_same_page_openings(memory_project, built_fact_index):
    build_index(memory_project.settings)
    seen = []
    for settings in (memory_project.settings, built_fact_index.settings):
        with open_reader(settings) as reader:
            names = {record.id: record.name for record in reader.documents()}
            openings = reader.page_openings(list(names))
            assert all(reader.chunks(list(page.chunk_ids))[0].text == page.text for page in openings)
            seen.append(sorted((names[page.document_id], page.page_index, len(page.chunk_ids), page.text) for page in openings))
    assert seen[0] == seen[1] and len(seen[0]) == 6


def test_an_unknown_store_is_a_config_error_naming_the_known_ones(project, capsys):
    settings = project.configure(store={"backend": "postgres"})
    with pytest.raises(ConfigError, match="unknown store.backend 'postgres'; known: sqlite-faiss"):
        open_reader(settings)
    assert main(["list", "--config", str(project.config)]) == 2
    assert "unknown store.backend 'postgres'" in capsys.readouterr().err
