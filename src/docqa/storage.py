"""The store seam: what retrieval reads and ingestion writes, and the factory that opens the configured store.

A store has two sides. ``IndexReader`` is one committed state of the index, searched by retrieval; ``IndexWriter``
changes the index for ingestion (one writer at a time) and makes its work visible with ``commit``. SQLite + FAISS
(``docqa.store``) is the implementation docqa ships; ``store.backend`` in config.yml picks one from ``STORES``.
Another store (a served database, say) is a class for each side registered under a new name: retrieval,
ingestion and the commands only ever see these two abstract base classes, which name every method they call:
a class that lacks one cannot be made.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Self, Sequence

from docqa.errors import ConfigError, IndexNotFoundError
from docqa.types import Chunk, DocumentRecord, PageOpening, StoredChunk

if TYPE_CHECKING:
    import numpy as np

    from docqa.settings import Settings

Ranking = list[tuple[int, float]]  # (chunk id, score), best first


class _Closed(ABC):
    """Used as a context manager, it is closed at the end."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class IndexReader(_Closed):
    """One committed state of the index; what retrieval and the commands read. Used as a context manager, it is
    closed at the end."""

    @abstractmethod
    def documents(self) -> list[DocumentRecord]:
        """Every indexed document, by name."""

    @abstractmethod
    def chunk_count(self) -> int:
        """How many chunks the index holds."""

    @abstractmethod
    def copies(self) -> dict[str, str]:
        """Files of the data folder indexed once, under another name: each such file's name → the document's."""

    @abstractmethod
    def chunk_ids(self, document_ids: Sequence[int]) -> list[int]:
        """The ids of the chunks of these documents."""

    @abstractmethod
    def chunks(self, ids: Sequence[int]) -> list[StoredChunk]:
        """The chunks with these ids, in the order of ``ids`` (ids the index lacks are left out)."""

    @abstractmethod
    def first_page_texts(self) -> dict[str, str]:
        """Each document's first page (its chunks joined in order), by document name."""

    @abstractmethod
    def page_openings(self, document_ids: Sequence[int]) -> list[PageOpening]:
        """Every page of these documents, with its chunk ids and its first chunk's text."""

    @abstractmethod
    def documents_matching(self, fts_query: str) -> set[str]:
        """Names of the documents with a chunk that matches ``fts_query`` (as ``lexical_search`` reads it)."""

    @abstractmethod
    def dense_search(self, query: np.ndarray, n: int, allowed_ids: Optional[Sequence[int]] = None) -> Ranking:
        """The ``n`` chunks whose vectors have the largest inner product with ``query`` (within ``allowed_ids``)."""

    @abstractmethod
    def lexical_search(self, fts_query: str, n: int, allowed_ids: Optional[Sequence[int]] = None) -> Ranking:
        """The ``n`` best BM25 matches of ``fts_query``, quoted terms joined by OR (``retrieval.fts_query``), over
        chunk text and document title."""

    @abstractmethod
    def is_current(self) -> bool:
        """Whether this is still the last committed state (another process may have built since it was opened)."""

    def fold_log(self) -> bool:
        """Fold what builds appended since into the index's own files, where a store keeps a log of them: True where
        all of it is folded, so that a reader opened now reads those files alone, and the next build's log starts
        again instead of growing (readers open all the time, as the web server's are, kept it growing). A store
        with no such log: False, nothing to do."""
        return False

    @abstractmethod
    def close(self) -> None:
        """Release what the reader holds open."""


class IndexWriter(_Closed):
    """Changes to the index, invisible to readers until ``commit`` (and, for a rebuild, ``publish``); what ingestion
    uses. Used as a context manager, it is closed at the end.

    A subclass's ``__init__`` calls this one's, which sets ``needs_repair`` (the index needs a commit even without a
    changed document) and ``notes`` (what the user should be told: a damaged index moved aside, say)."""

    def __init__(self) -> None:
        self.needs_repair = False
        self.notes: list[str] = []

    @abstractmethod
    def documents(self) -> list[DocumentRecord]:
        """Every document of the index being written, by name."""

    @abstractmethod
    def copies(self) -> dict[str, str]:
        """The copies as ``set_copies`` last set them, else as the index holds them."""

    @abstractmethod
    def set_copies(self, copies: dict[str, str]) -> None:
        """The files found to be copies of an indexed document (name → the document's name), kept at the next
        commit; a build calls it every time, so copies deleted from the folder drop out."""

    @abstractmethod
    def add_document(self, name: str, digest: str, pages: int, chunks: Sequence[Chunk], vectors: np.ndarray,
                     title: str = "") -> None:
        """A document with its chunks and their vectors (one row per chunk, L2-normalised float32); ``title`` is its
        label read from its content (company, form, period), searched with the chunk text."""

    @abstractmethod
    def remove_document(self, document_id: int) -> None:
        """Remove the document and its chunks."""

    @abstractmethod
    def rename_document(self, document_id: int, name: str) -> None:
        """Give the document (and its chunks) a new name; its title, read from its content, stays."""

    @abstractmethod
    def replaced_names(self) -> list[str]:
        """A rebuild: the document names of the index it replaces, whatever its settings ([] when there is none,
        it cannot be read, or this is no rebuild)."""

    @abstractmethod
    def carry_over(self, wanted: Callable[[str], bool]) -> list[str]:
        """A rebuild: copy the documents whose names are ``wanted`` from the index it replaces, as they are there
        (their files cannot be read now), where that index was built with the same settings; a document already
        added (same name or same digest) is not copied. Returns the names copied ([] for no rebuild)."""

    @abstractmethod
    def commit(self) -> None:
        """Make everything so far visible to readers that open after this."""

    @abstractmethod
    def publish(self) -> None:
        """End of the build: a rebuild becomes the live index only now, complete."""

    @abstractmethod
    def close(self) -> None:
        """Release the writer; what was not committed is dropped."""


@dataclass(frozen=True)
class StoreBackend:
    """How to open each side of one kind of store, given the index folder (``paths.vectorstore``)."""

    reader: Callable[..., IndexReader]  # (folder, fingerprint=None) -> IndexReader
    writer: Callable[..., IndexWriter]  # (folder, fingerprint, *, rebuild) -> IndexWriter


def _sqlite_faiss() -> StoreBackend:
    from docqa.store import Store, StoreWriter

    return StoreBackend(Store, StoreWriter)


# Store names (the values of store.backend) to a function returning the backend: a store's heavy imports wait
# until it is used.
STORES: dict[str, Callable[[], StoreBackend]] = {"sqlite-faiss": _sqlite_faiss}


def _backend(settings: Settings) -> StoreBackend:
    name = settings.store.backend
    if name not in STORES:
        raise ConfigError(f"unknown store.backend '{name}'; known: {', '.join(sorted(STORES))}")
    return STORES[name]()


def open_reader(settings: Settings, fingerprint: Optional[dict] = None) -> IndexReader:
    """The configured store's current committed state (IndexNotFoundError before the first build); with
    ``fingerprint`` (``ingest.index_fingerprint``), an index built with other settings is refused (StoreError)."""
    folder = settings.path(settings.paths.vectorstore)
    try:
        return _backend(settings).reader(folder, fingerprint)
    except IndexNotFoundError:
        # Said after a build that could read none of the files too: what the data folder holds tells the two apart
        raise IndexNotFoundError(f"no index in {folder} ({_data_holds(settings)}); build it first: "
                                 "python db_build.py") from None


def _data_holds(settings: Settings) -> str:
    from docqa.documents import find_pdfs

    data = settings.path(settings.paths.data)
    if not data.is_dir():
        return f"there is no data folder {data}: put your PDF files there"
    count = len(find_pdfs(data))
    if not count:
        return f"the data folder {data} holds no PDF files: put yours there"
    files = "1 PDF file" if count == 1 else f"{count} PDF files"
    return f"the data folder {data} holds {files}, none indexed yet; a build says why it cannot read one"


def out_of_space(error: BaseException) -> bool:
    """Whether ``error`` says the disk (or the user's quota) is full: SQLite, FAISS and the OS each say it their way."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return any(words in text for words in ("database or disk is full", "No space left on device", "Disk quota exceeded"))


def disk_full(folder: Path, error: Optional[BaseException] = None) -> ConfigError:
    """What to say of ``error``, out of space during a build: the index folder's disk, where that is what filled up
    (its file, or, where the error names none, a disk left with little room), else the other disk."""
    where = getattr(error, "filename", None) or _named_file(str(error))
    if where:
        ours = Path(os.path.realpath(where)).is_relative_to(os.path.realpath(folder))
    else:
        try:  # measured after the failure, when the unfinished part is gone: room to spare means another disk
            ours = shutil.disk_usage(_existing(folder)).free < ROOM_TO_SPARE
        except OSError:
            ours = True
    if not ours:  # the models folder, say, where the build writes an int8 copy of the embedding model
        what = f"at {where}" if where else f"({error})"
        return ConfigError(f"a disk ran out of space during the build {what}; the index is as its last commit left "
                           "it: free some space there and build again")
    return ConfigError(f"the disk of the index folder {folder} ran out of space; the index is as its last commit "
                       "left it: free some space and build again, or point paths.vectorstore in config.yml at "
                       "another disk")


ROOM_TO_SPARE = 64 * 2**20


def _named_file(message: str) -> Optional[str]:
    """The file a library's message names: FAISS says "could not open PATH for writing"."""
    match = re.search(r"could not open (\S+) for writing", message)
    return match.group(1) if match else None


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def open_writer(settings: Settings, fingerprint: dict, *, rebuild: bool = False) -> IndexWriter:
    """A writer on the configured store; ``fingerprint`` names the settings the vectors depend on (a store refuses
    to mix vectors of different settings unless ``rebuild`` starts it over)."""
    return _backend(settings).writer(settings.path(settings.paths.vectorstore), fingerprint, rebuild=rebuild)
