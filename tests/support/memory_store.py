"""A second store for the store seam: the whole index in process memory, found by folder name.

It subclasses ``IndexReader`` and ``IndexWriter`` with numpy and word counts, nothing shared with the SQLite + FAISS
store, so a test that builds, rebuilds and searches through it shows that ingestion and retrieval depend on the seam
only.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from docqa.errors import IndexNotFoundError, StoreError
from docqa.storage import IndexReader, IndexWriter, StoreBackend
from docqa.types import Chunk, DocumentRecord, PageOpening, StoredChunk

_WORD = re.compile(r"\w+")


@dataclass
class _Index:
    fingerprint: dict
    documents: dict[int, DocumentRecord] = field(default_factory=dict)
    chunks: dict[int, StoredChunk] = field(default_factory=dict)
    owners: dict[int, int] = field(default_factory=dict)  # chunk id -> document id
    titles: dict[int, str] = field(default_factory=dict)  # document id -> its content label
    vectors: dict[int, np.ndarray] = field(default_factory=dict)
    copies: dict[str, str] = field(default_factory=dict)  # a file indexed once under another name -> that name
    next_id: int = 1


COMMITTED: dict[Path, _Index] = {}  # folder -> the last committed index


class MemoryReader(IndexReader):
    def __init__(self, folder: Path, fingerprint: Optional[dict] = None):
        if folder not in COMMITTED:
            raise IndexNotFoundError(f"no index in {folder}")
        self.folder = folder
        self.index = COMMITTED[folder]  # commits replace the object, so this stays one committed state
        if fingerprint is not None and fingerprint != self.index.fingerprint:
            raise StoreError("settings changed since the index was built; run: python db_build.py --rebuild")

    def documents(self) -> list[DocumentRecord]:
        return sorted(self.index.documents.values(), key=lambda record: record.name)

    def chunk_count(self) -> int:
        return len(self.index.chunks)

    def copies(self) -> dict[str, str]:
        return dict(self.index.copies)

    def chunk_ids(self, document_ids: Sequence[int]) -> list[int]:
        wanted = set(document_ids)
        return [chunk_id for chunk_id, owner in self.index.owners.items() if owner in wanted]

    def chunks(self, ids: Sequence[int]) -> list[StoredChunk]:
        return [self.index.chunks[i] for i in ids if i in self.index.chunks]

    def first_page_texts(self) -> dict[str, str]:
        texts: dict[str, list[str]] = {}
        for chunk in self.index.chunks.values():
            if chunk.page_index == 0:
                texts.setdefault(chunk.document, []).append(chunk.text)
        return {name: "\n".join(parts) for name, parts in texts.items()}

    def page_openings(self, document_ids: Sequence[int]) -> list[PageOpening]:
        pages: dict[tuple[int, int], list[int]] = {}
        for chunk_id in sorted(self.chunk_ids(document_ids)):
            pages.setdefault((self.index.owners[chunk_id], self.index.chunks[chunk_id].page_index), []).append(chunk_id)
        return [PageOpening(document, page, tuple(ids), self.index.chunks[ids[0]].text) for (document, page), ids in pages.items()]

    def dense_search(self, query: np.ndarray, n: int, allowed_ids: Optional[Sequence[int]] = None):
        ids = self._candidates(allowed_ids)
        scored = [(i, float(np.dot(self.index.vectors[i], query))) for i in ids]
        return sorted(scored, key=lambda pair: -pair[1])[:n]

    def lexical_search(self, fts_query: str, n: int, allowed_ids: Optional[Sequence[int]] = None):
        """Quoted OR-ed terms, scored by how many of them a chunk's title and text hold (rarer terms weigh more)."""
        terms = re.findall(r'"([^"]+)"', fts_query)
        ids = self._candidates(allowed_ids)
        words = {i: self._words(i) for i in ids}
        weight = {term: math.log(1 + len(words) / (1 + sum(term in w for w in words.values()))) for term in terms}
        scored = [(i, sum(weight[t] for t in terms if t in words[i])) for i in ids]
        return sorted([pair for pair in scored if pair[1] > 0], key=lambda pair: -pair[1])[:n]

    def documents_matching(self, fts_query: str) -> set[str]:
        terms = re.findall(r'"([^"]+)"', fts_query)
        return {self.index.chunks[i].document for i in self.index.chunks if any(t in self._words(i) for t in terms)}

    def _candidates(self, allowed_ids: Optional[Sequence[int]]) -> list[int]:
        return list(self.index.chunks) if allowed_ids is None else [i for i in allowed_ids if i in self.index.chunks]

    def _words(self, chunk_id: int) -> set[str]:
        chunk = self.index.chunks[chunk_id]
        title = self.index.titles.get(self.index.owners[chunk_id], "")
        return {word.lower() for word in _WORD.findall(f"{title}\n{chunk.indexed_text}")}

    def is_current(self) -> bool:
        return COMMITTED.get(self.folder) is self.index

    def close(self) -> None:
        pass


class MemoryWriter(IndexWriter):
    def __init__(self, folder: Path, fingerprint: dict, *, rebuild: bool = False):
        super().__init__()
        self.folder = folder
        committed = COMMITTED.get(folder)
        if committed and committed.fingerprint != fingerprint and not rebuild:
            raise StoreError("settings changed since the index was built; run: python db_build.py --rebuild")
        self.index = _Index(fingerprint) if rebuild or committed is None else copy.deepcopy(committed)
        self.index.fingerprint = fingerprint
        self.rebuild = rebuild
        # What a rebuild replaces: commits put a new object in COMMITTED, so this one stays as it was.
        self._replaces = committed if rebuild else None
        self._staged: Optional[_Index] = None

    def documents(self) -> list[DocumentRecord]:
        return sorted(self.index.documents.values(), key=lambda record: record.name)

    def copies(self) -> dict[str, str]:
        return dict(self.index.copies)

    def set_copies(self, copies: dict[str, str]) -> None:
        self.index.copies = dict(copies)

    def add_document(self, name: str, digest: str, pages: int, chunks: Sequence[Chunk], vectors: np.ndarray,
                     title: str = "") -> None:
        document_id = self._next_id()
        self.index.titles[document_id] = title
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.index.documents[document_id] = DocumentRecord(document_id, name, digest, pages, len(chunks), now)
        for chunk, vector in zip(chunks, vectors):
            chunk_id = self._next_id()
            self.index.chunks[chunk_id] = StoredChunk(chunk.document, chunk.page_index, chunk.text, chunk.header,
                                                      id=chunk_id)
            self.index.owners[chunk_id] = document_id
            self.index.vectors[chunk_id] = np.asarray(vector, dtype=np.float32)

    def remove_document(self, document_id: int) -> None:
        del self.index.documents[document_id], self.index.titles[document_id]
        for chunk_id in [i for i, owner in self.index.owners.items() if owner == document_id]:
            del self.index.chunks[chunk_id], self.index.owners[chunk_id], self.index.vectors[chunk_id]

    def rename_document(self, document_id: int, name: str) -> None:
        self.index.documents[document_id] = replace(self.index.documents[document_id], name=name)
        for chunk_id, owner in self.index.owners.items():
            if owner == document_id:
                self.index.chunks[chunk_id] = replace(self.index.chunks[chunk_id], document=name)

    def replaced_names(self) -> list[str]:
        if self._replaces is None:
            return []
        return [record.name for record in self._replaces.documents.values()]

    def carry_over(self, wanted: Callable[[str], bool]) -> list[str]:
        old = self._replaces
        if old is None or old.fingerprint != self.index.fingerprint:
            return []
        copied = []
        for document_id, record in sorted(old.documents.items(), key=lambda item: item[1].name):
            present = any(mine.name == record.name or mine.digest == record.digest
                          for mine in self.index.documents.values())
            if not wanted(record.name) or present:
                continue
            ids = sorted(chunk_id for chunk_id, owner in old.owners.items() if owner == document_id)
            if ids:
                chunks = [old.chunks[i] for i in ids]
                self.add_document(record.name, record.digest, record.pages,
                                  [Chunk(c.document, c.page_index, c.text, c.header) for c in chunks],
                                  np.vstack([old.vectors[i] for i in ids]), title=old.titles.get(document_id, ""))
                copied.append(record.name)
        return copied

    def _next_id(self) -> int:
        self.index.next_id += 1
        return self.index.next_id - 1

    def commit(self) -> None:
        """Visible at once, except in a rebuild: that replaces the live index only when published."""
        if self.rebuild:
            self._staged = copy.deepcopy(self.index)
        else:
            COMMITTED[self.folder] = copy.deepcopy(self.index)

    def publish(self) -> None:
        if self._staged is not None:
            COMMITTED[self.folder] = self._staged

    def close(self) -> None:
        pass


def memory_backend() -> StoreBackend:
    return StoreBackend(MemoryReader, MemoryWriter)
