"""Build or update the index from the PDFs in the data folder.

Only files whose content is new or changed are read and embedded; the rest is kept.
One bad file is recorded and skipped, never fatal; a file or folder that cannot be read
keeps what the index holds of it. An update commits whole documents at checkpoints, so an
interrupted build keeps what it finished; a rebuild is switched in only when complete.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from docqa.chunking import Chunk, Chunker
from docqa.documents import Page, check_header, file_digest, file_state, find_pdfs, page_count, read_pages
from docqa.errors import DocumentError, NoDocumentsError, advising
from docqa.profiles import describe
from docqa.settings import Settings, check_settings
from docqa.signals import uninterrupted
from docqa.storage import IndexWriter, disk_full, open_writer, out_of_space

log = logging.getLogger(__name__)
EARLIER_VERSION_KEPT = "; its earlier version stays in the index"

CHUNKER_VERSION = "recursive-3-content-labels"  # headers name the document from its content, not its file name
CHECKPOINT_SECONDS = 30.0
# The share of a build's chunks cut short by the embedding model's window above which the build says so: at the
# default 500 characters about 3 % of an annual report's chunks are (tables of figures), at 1,500 most are.
CUT_SHORT_NOTED = 0.10
# About 200 chunks: enough for the embedder to batch texts of similar length, small enough for the progress bar.
EMBED_GROUP_CHARS = 100_000


class BuildInterrupted(KeyboardInterrupt):
    """Ctrl-C during an update, raised once the documents finished before it are committed; ``report`` says
    what was done."""

    def __init__(self, report: "BuildReport"):
        super().__init__()
        self.report = report


@dataclass
class Skipped:
    name: str
    reason: str


@dataclass
class BuildReport:
    files: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)
    renamed_from: dict[str, str] = field(default_factory=dict)  # each renamed document's new name -> its old one
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, nothing wrong: identical files, repairs
    duplicates: dict[str, str] = field(default_factory=dict)  # a file → the identical one indexed in its place
    pages: int = 0
    chunks: int = 0
    seconds: float = 0.0
    documents: int = 0  # in the index afterwards
    interrupted: bool = False  # stopped by Ctrl-C: what was finished is kept
    unread: int = 0  # new or changed files the build did not reach
    left_as_it_was: bool = False  # a rebuild that could read nothing: the index it would replace stays

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.renamed or self.removed)

    def summary(self) -> str:
        if self.interrupted:
            left = (f"{_count(self.unread, 'file')} {'waits' if self.unread == 1 else 'wait'} for the next build"
                    if self.unread else "nothing was left to do")
            return (f"interrupted: what was done before it is kept ({len(self.added)} added, {len(self.updated)} "
                    f"updated, {len(self.renamed)} renamed, {len(self.removed)} removed); {left} ({self.seconds:.1f} s)")
        if self.left_as_it_was or (not self.documents and not self.changed):
            kept = f"; the index is left as it was ({_count(self.documents, 'document')})" if self.left_as_it_was else ""
            return (f"nothing indexed: {_count(len(self.skipped), 'file')} skipped, none could be indexed{kept} "
                    f"({self.seconds:.1f} s)")
        # Files that are copies of an indexed one count nowhere else: "4 unchanged" of 5 files said nothing of the fifth
        copies = len(self.duplicates)
        copied = f", {copies} {'copy' if copies == 1 else 'copies'} of an indexed file" if copies else ""
        if not self.changed:
            return (f"up to date: {_count(self.unchanged, 'file')} unchanged{copied}, {len(self.skipped)} skipped "
                    f"({self.seconds:.1f} s)")
        # A build that read nothing (renames, removals) has no rate: "(0.0 pages/s, 0.0 chunks/s)" said nothing
        rate = (f" ({self.pages / self.seconds:.1f} pages/s, {self.chunks / self.seconds:.1f} chunks/s)"
                if self.seconds and self.pages else "")
        return (
            f"{_count(self.files, 'file')}: {len(self.added)} added, {len(self.updated)} updated, {len(self.renamed)} renamed, "
            f"{len(self.removed)} removed, {self.unchanged} unchanged{copied}, {len(self.skipped)} skipped; "
            f"{_count(self.pages, 'page')}, {_count(self.chunks, 'chunk')} in {self.seconds:.1f} s{rate}"
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def index_fingerprint(settings: Settings) -> dict:
    """Everything that changes what a chunk or its vector is; a change needs --rebuild."""
    return {
        "embedding_model": settings.embeddings.model,
        "chunk_size": settings.ingest.chunk_size,
        "chunk_overlap": settings.ingest.chunk_overlap,
        "extractor": settings.ingest.extractor,
        "chunker": CHUNKER_VERSION,
        # Absent means exact vectors: fp32, or bf16 within cosine 0.9999 of them, which mix in one index.
        **({"document_vectors": "int8"} if settings.embeddings.build_precision == "int8" else {}),
    }


@dataclass
class _Plan:
    """What a run has to do, decided by content digests before anything is read."""

    to_read: list[tuple[str, Path, str, Optional[int]]] = field(default_factory=list)  # name, path, digest, old id
    # Each file's size, times and inode as it was hashed: one that differs once read changed meanwhile
    hashed_as: dict[Path, tuple] = field(default_factory=dict)
    renames: list[tuple[int, str]] = field(default_factory=list)
    removals: list[tuple[int, str]] = field(default_factory=list)
    unreadable: set[str] = field(default_factory=set)  # files that exist but cannot be read now
    kept: list[str] = field(default_factory=list)  # indexed documents kept because of that (or of their folder)


def build_index(
    settings: Settings,
    *,
    rebuild: bool = False,
    progress: Optional[Callable[[int], None]] = None,
    on_total: Optional[Callable[[int], None]] = None,
) -> BuildReport:
    """Bring the index in line with the data folder; returns what was done."""
    check_settings(settings, "build_index(...)")
    with advising(settings):
        try:
            return _build(settings, rebuild, progress, on_total)
        except (sqlite3.OperationalError, OSError, RuntimeError) as error:  # RuntimeError: FAISS's own
            if out_of_space(error):
                raise disk_full(settings.path(settings.paths.vectorstore), error) from None
            raise


def _build(settings: Settings, rebuild: bool, progress, on_total) -> BuildReport:
    started = time.perf_counter()
    data = settings.path(settings.paths.data)
    report = BuildReport()
    files, unreadable, broken_links = _named_files(data, report)
    # with the files skipped for their names (the folders skipped are no files)
    report.files = len(files) + sum(1 for skipped in report.skipped if not skipped.name.endswith("/"))
    with open_writer(settings, index_fingerprint(settings), rebuild=rebuild) as writer:
        # Where the index (the one a rebuild replaces) holds documents from: the broken links that matter.
        indexed_names = writer.replaced_names() if rebuild else [record.name for record in writer.documents()]
        _name_the_broken_links(indexed_names, broken_links, unreadable, report)
        plan = _plan(writer, files, unreadable, report)
        for document_id, _name in plan.removals:  # first: a file renamed onto a removed one's name takes it
            writer.remove_document(document_id)
        # Through names no file has, so that files that swapped or rotated names never meet on one.
        for document_id, _name in plan.renames:
            writer.rename_document(document_id, f"\0{document_id}")
        for document_id, name in plan.renames:
            writer.rename_document(document_id, name)
        if plan.to_read:
            page_counts = _count_pages(plan.to_read)
            if on_total:
                on_total(sum(page_counts.values()))
            try:
                _read_and_add(writer, plan, page_counts, settings, report, progress or (lambda pages: None))
            except KeyboardInterrupt:
                if rebuild:
                    raise  # a partial rebuild never replaces the whole index: the old one stays
                report.interrupted = True  # the documents finished so far are kept: each was added whole
        if not rebuild and indexed_names and len(report.removed) == len(indexed_names) and report.skipped \
                and not (report.added or report.updated or report.renamed or report.unchanged or report.duplicates
                         or report.interrupted):
            # Files none of which can be read (a cloud drive's placeholders, a copy gone wrong) would empty the
            # index, as an empty folder (more often an unmounted disk) would: it stays as it was (nothing is
            # committed).
            reasons = "; ".join(f"{skipped.name}: {skipped.reason}" for skipped in report.skipped[:3])
            raise NoDocumentsError(
                f"none of the files in {data} can be read ({reasons}{'; ...' if len(report.skipped) > 3 else ''}), "
                f"and every document of the index would be removed: the index is left as it was "
                f"({_count(len(indexed_names), 'document')})")
        if rebuild:
            # What cannot be read now comes over from the index being replaced, where it can: after the reading, so
            # that a readable copy of a document wins and is not added twice.
            plan.kept = writer.carry_over(lambda name: name in plan.unreadable or name.startswith(tuple(unreadable)))
        _copies_of_unread_files_skipped(report)
        _say_what_is_kept(report, plan, unreadable, rebuild, indexed_names)
        # Kept so that `list` and --doc know a copy's name (it was only in this build's report)
        copies_changed = report.duplicates != writer.copies()
        writer.set_copies(report.duplicates)
        committed = report.changed or (rebuild and plan.kept) or writer.needs_repair or (copies_changed and not rebuild)
        try:
            with uninterrupted():
                if committed:
                    writer.commit()
                writer.publish()
        except KeyboardInterrupt:  # held back until the commit was done: everything is kept
            report.interrupted = True
        report.notes += writer.notes
        report.documents = len(writer.documents())
        if rebuild and not committed and indexed_names:
            # Nothing to replace it with: the index being rebuilt stays, as for an empty data folder
            report.documents = len(indexed_names)
            report.left_as_it_was = True
    report.seconds = time.perf_counter() - started
    if report.interrupted:
        raise BuildInterrupted(report)
    return report


def _named_files(data: Path, report: BuildReport) -> tuple[dict[str, Path], list[str], dict[str, str]]:
    """The PDFs by name relative to ``data``, the relative names of folders that could not be listed, and links
    that lead nowhere now (name → reason)."""
    if data.exists() and not data.is_dir():
        raise NoDocumentsError(f"the data folder is a file: {data}; set paths.data to the folder that holds your PDFs")
    if not data.is_dir():
        raise NoDocumentsError(f"data folder not found: {data}; create it and put your PDF files there")
    unreadable: list[str] = []

    def on_unreadable(folder: Path, reason: str) -> None:
        name = folder.relative_to(data).as_posix() + "/"
        unreadable.append(name)
        report.skipped.append(Skipped(name, reason))

    try:
        os.scandir(data).close()
    except OSError as exc:
        raise NoDocumentsError(f"cannot read the data folder {data} ({exc.strerror or exc}); make it readable "
                               f"(the index is left as it was)") from None
    files = {}
    broken_links: dict[str, str] = {}
    for path in find_pdfs(data, on_unreadable,
                          lambda link, reason: broken_links.update({link.relative_to(data).as_posix(): reason})):
        name = path.relative_to(data).as_posix()
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # bytes of another system's encoding (a ZIP made on Windows, say)
            report.skipped.append(Skipped(name, "its name is not valid UTF-8 (written in another system's "
                                                "encoding?); rename the file"))
            continue
        files[name] = path
    if not files and not unreadable and not report.skipped:
        # An empty folder is more often an unmounted disk than a wish to drop every document: the index stays.
        raise NoDocumentsError(f"no PDF files in {data}; put your PDF files there and run again "
                               f"(the index is left as it was)")
    return files, unreadable, broken_links


def _name_the_broken_links(names: list[str], broken_links: dict[str, str], unreadable: list[str],
                           report: BuildReport) -> None:
    """A link that leads nowhere, under whose name the index holds documents (``names``), is a folder on a drive
    not mounted now: named, and what the index holds from it kept. Any other broken link is none of the index's
    business."""
    for link, reason in broken_links.items():
        if any(name.startswith(f"{link}/") for name in names):
            unreadable.append(f"{link}/")
            report.skipped.append(Skipped(f"{link}/", reason))


def _plan(writer: IndexWriter, files: dict[str, Path], unreadable: list[str], report: BuildReport) -> _Plan:
    plan = _Plan()
    indexed = {record.digest: record for record in writer.documents()}
    by_name = {record.name: record for record in indexed.values()}
    seen: dict[str, str] = {}
    for name, path in files.items():
        try:
            check_header(path)  # what is no PDF at all is not read whole to hash it (a 4 GB file took 15 s a build)
            plan.hashed_as[path] = file_state(path)
            digest = file_digest(path)
        except DocumentError as error:
            report.skipped.append(Skipped(name, error.reason))
            plan.unreadable.add(name)
            continue
        if digest in seen:
            if seen[digest] == name:  # the indexed copy, which an earlier-sorted duplicate already pointed to
                report.unchanged += 1
            else:
                report.notes.append(_copy_note(name, seen[digest]))
                report.duplicates[name] = seen[digest]
            continue
        seen[digest] = name
        record = indexed.get(digest)
        if record is None:
            old = by_name.get(name)
            plan.to_read.append((name, path, digest, old.id if old else None))
        elif record.name == name:
            report.unchanged += 1
        elif record.name in files and _digest_or_none(files[record.name]) == digest:
            report.notes.append(_copy_note(name, record.name))
            report.duplicates[name] = record.name
            seen[digest] = record.name
        else:
            plan.renames.append((record.id, name))
            report.renamed.append(name)
            report.renamed_from[name] = record.name
    renamed_ids = {document_id for document_id, _ in plan.renames}
    # A new file under the name of a document that moved to another name replaces nothing: the move keeps it.
    plan.to_read = [(name, path, digest, None if old_id in renamed_ids else old_id)
                    for name, path, digest, old_id in plan.to_read]
    reading = {old_id for *_, old_id in plan.to_read if old_id is not None}
    # Indexed documents whose file or folder cannot be read now are never removed for that.
    plan.kept = [record.name for record in indexed.values()
                 if record.name in plan.unreadable or record.name.startswith(tuple(unreadable))]
    kept = {by_name[name].id for name in plan.kept}
    for record in indexed.values():
        if record.digest not in seen and not {record.id} & (reading | renamed_ids | kept):
            plan.removals.append((record.id, record.name))
            report.removed.append(record.name)
    return plan


def _copies_of_unread_files_skipped(report: BuildReport) -> None:
    """A copy of a file that could not be read is skipped as that file was: it was said to be "the same content as
    X, which is indexed", though neither was (its twin is taken as the copy to read before it is read)."""
    reasons = {skipped.name: skipped.reason for skipped in report.skipped}
    for name, twin in list(report.duplicates.items()):
        if twin in reasons:
            del report.duplicates[name]
            report.notes.remove(_copy_note(name, twin))
            reason = reasons[twin].removesuffix(EARLIER_VERSION_KEPT)  # the twin's earlier version, not the copy's
            report.skipped.append(Skipped(name, f"the same content as {twin}, which cannot be read: {reason}"))


def _copy_note(name: str, twin: str) -> str:
    return f"{name} has the same content as {twin}; indexed once"


def _say_what_is_kept(report: BuildReport, plan: _Plan, unreadable_folders: list[str], rebuild: bool,
                      indexed_names: list[str]) -> None:
    """Each unreadable file or folder's reason ends with what became of its documents (``indexed_names``: the
    documents of the index before this build)."""
    for skipped in report.skipped:
        if skipped.name in unreadable_folders:
            if any(name.startswith(skipped.name) for name in plan.kept):
                skipped.reason += "; what the index held from it is kept"
            elif rebuild:
                skipped.reason += "; nothing from it is in the rebuilt index"
        elif skipped.name in plan.unreadable and skipped.name in plan.kept:
            skipped.reason += "; its indexed copy is kept"
        elif rebuild and skipped.name in indexed_names:  # an update keeps it (and says so), a rebuild cannot
            skipped.reason += "; its earlier version is not in the rebuilt index"


def _digest_or_none(path: Path) -> Optional[str]:
    try:
        return file_digest(path)
    except DocumentError:
        return None


def _count_pages(to_read: list) -> dict[Path, int]:
    """Page counts up front, so that progress can estimate the time left; unreadable files count 0."""
    return {path: page_count(path) for _, path, _, _ in to_read}


def _read_and_add(writer: IndexWriter, plan: _Plan, page_counts: dict[Path, int], settings: Settings,
                  report: BuildReport, progress: Callable[[int], None]) -> None:
    from docqa.embeddings import create_embedder

    chunker = Chunker(settings.ingest.chunk_size, settings.ingest.chunk_overlap)
    report.unread = len(plan.to_read)
    embedder = create_embedder(settings, documents=True)
    last_commit = time.perf_counter()
    for name, path, digest, old_id in plan.to_read:
        damaged: list[str] = []
        try:
            pages = [replace(page, document=name) for page in read_pages(path, settings.ingest.extractor, damaged=damaged)]
            if file_state(path) != plan.hashed_as[path]:
                # Rewritten under the reader (a copy or a sync under way): its pages may be half of each version,
                # or missing, and the digest recorded would mark the file as read for every later build.
                raise DocumentError(path, "it changed while it was being read (a copy or a sync under way?); the "
                                          "next build reads it again")
        except DocumentError as error:
            # A changed file that cannot be read: its earlier version is removed only once the new one is read.
            kept = EARLIER_VERSION_KEPT if old_id is not None else ""
            report.skipped.append(Skipped(name, error.reason + kept))
            report.unread -= 1
            progress(page_counts[path])
            continue
        if damaged:
            report.notes.append(f"{name}: {', '.join(damaged)} cannot be read (damaged); indexed without "
                                f"{'it' if len(damaged) == 1 else 'them'}")
        if page_counts[path] and len(pages) != page_counts[path]:
            # pypdf passes over a page it cannot find (a damaged page tree): later pages would be cited by the
            # wrong number
            report.notes.append(f"{name}: the {settings.ingest.extractor} extractor reads {len(pages)} of its "
                                f"{page_counts[path]} pages, so pages may be cited by the wrong number; "
                                f"ingest.extractor pypdfium2 reads them all")
        label = describe(pages[0].text).label
        chunks, vectors = _chunk_and_embed(pages, label, chunker, embedder, progress)
        with uninterrupted():
            if old_id is not None:
                writer.remove_document(old_id)
            writer.add_document(name, digest, page_counts[path], chunks, vectors, title=label)
            (report.updated if old_id is not None else report.added).append(name)
            report.unread -= 1
            report.pages += page_counts[path]
            report.chunks += len(chunks)
            if time.perf_counter() - last_commit > CHECKPOINT_SECONDS:
                writer.commit()
                last_commit = time.perf_counter()
    if note := cut_short_note(embedder.cut_short, report.chunks, embedder.window):
        report.notes.append(note)


def cut_short_note(cut: int, chunks: int, window: int) -> Optional[str]:
    """A note where many chunks are longer than the embedding model reads: the dense search then sees only their
    start (BM25 still has all of them). A few always are (a table row of many figures takes many tokens)."""
    if not chunks or cut / chunks <= CUT_SHORT_NOTED:
        return None
    return (f"{cut} of the {chunks} chunks indexed are longer than the embedding model reads ({window} tokens): "
            f"the search by meaning sees only their start; a smaller ingest.chunk_size keeps them whole")


def _chunk_and_embed(pages: list[Page], label: str, chunker: Chunker, embedder,
                     progress: Callable[[int], None]) -> tuple[list[Chunk], np.ndarray]:
    """A document's chunks and their vectors, a group of pages at a time, so that progress moves inside a long document."""
    chunks: list[Chunk] = []
    vectors = []
    for group in _page_groups(pages):
        group_chunks = list(chunker.split(group, label))
        vectors.append(embedder.embed_documents([chunk.indexed_text for chunk in group_chunks]))
        chunks += group_chunks
        progress(len(group))
    return chunks, np.vstack(vectors)


def _page_groups(pages: list[Page]) -> Iterator[list[Page]]:
    """Consecutive pages; a group ends with the page that brings its text to EMBED_GROUP_CHARS."""
    group: list[Page] = []
    size = 0
    for page in pages:
        group.append(page)
        size += len(page.text)
        if size >= EMBED_GROUP_CHARS:
            yield group
            group, size = [], 0
    if group:
        yield group
