"""Pages → chunks, with the card's recursive character splitter.

Chunks never cross a page boundary, so every chunk has exactly one 0-based page index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from docqa.documents import Page


@dataclass(frozen=True)
class Chunk:
    document: str
    page_index: int
    text: str

    @property
    def page_number(self) -> int:
        """The page number a PDF viewer shows."""
        return self.page_index + 1


class Chunker:
    def __init__(self, chunk_size: int = 500, chunk_overlap: int = 50):
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        self._splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)

    def split(self, pages: Iterable[Page]) -> Iterator[Chunk]:
        for page in pages:
            for text in self._splitter.split_text(page.text):
                if text.strip():
                    yield Chunk(page.document, page.page_index, text)
