"""Value types that ingestion, every store and retrieval share. This module imports nothing from docqa."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    """A piece of one page's text, as ingestion makes it."""

    document: str
    page_index: int
    text: str
    header: str = ""  # embedded and searched with the text, never shown (see docqa.chunking)

    @property
    def page_number(self) -> int:
        """The page number a PDF viewer shows."""
        return self.page_index + 1

    @property
    def indexed_text(self) -> str:
        """What is embedded and searched: the header, then the text."""
        return f"{self.header}\n{self.text}" if self.header else self.text


@dataclass(frozen=True)
class StoredChunk(Chunk):
    """A chunk as a store returns it: with the id that searches rank."""

    id: int = 0


@dataclass(frozen=True)
class PageOpening:
    """One page of an indexed document: the ids of its chunks in reading order and the text of the first."""

    document_id: int
    page_index: int
    chunk_ids: tuple[int, ...]
    text: str


@dataclass(frozen=True)
class DocumentRecord:
    """One indexed file: ``name`` is its path under the data folder, ``digest`` its content hash."""

    id: int
    name: str
    digest: str
    pages: int
    chunks: int
    indexed_at: str


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk and its score (higher is better; the scale depends on the ranking)."""

    chunk: StoredChunk
    score: float
