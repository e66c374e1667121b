"""Pages → chunks, with the card's recursive character splitter.

Chunks never cross a page boundary, so every chunk has exactly one 0-based page index.
A chunk also carries a header that is embedded and searched with its text but never shown: the document's
label (company, form and period, read from its first page by docqa.profiles.describe; never the file name, which
may say anything) and the headings it sits under on its page. A table row in the middle of a statement then still
says which company, year and statement it belongs to.
"""

from __future__ import annotations

import bisect
import re
from typing import Iterable, Iterator

from docqa.documents import Page
from docqa.types import Chunk

# Headings at the top of a page name what the whole page is ("Consolidated Balance Sheets").
PAGE_TITLE_LINES = 4
MAX_HEADING_CHARS = 90
_MINOR_WORDS = frozenset("a an and as at by for from in of on or per the to vs with".split())
_NOT_HEADINGS = frozenset({"table of contents", "index", "contents"})


def is_heading(line: str) -> bool:
    """A short line of capitalised words without figures: how statement titles and section names look."""
    line = line.strip()
    if not 3 <= len(line) <= MAX_HEADING_CHARS or line.lower() in _NOT_HEADINGS:
        return False
    if line[-1] in ".,;" or "$" in line or "%" in line or len(re.findall(r"\d[\d,.]*", line)) > 1:
        return False
    words = [word for word in re.findall(r"[A-Za-z][\w'’&-]*", line) if word.lower() not in _MINOR_WORDS]
    return 0 < len(words) <= 12 and all(word[0].isupper() for word in words)


def page_title(text: str) -> list[str]:
    """Heading lines among the first lines of a page."""
    lines = [line.strip() for line in text.split("\n") if line.strip()][:PAGE_TITLE_LINES]
    return [line for line in lines if is_heading(line)]


class Headings:
    """The heading lines of a page, looked up by position: each line is judged once, however many chunks the page
    has (judging every earlier line again for each chunk took minutes on a page of a megabyte)."""

    def __init__(self, text: str) -> None:
        self._ends: list[int] = []  # where each heading line's line break is
        self._lines: list[str] = []
        start = 0
        for line in text.split("\n")[:-1]:  # the last line has no line break: it is never before a chunk
            if is_heading(line):
                self._ends.append(start + len(line))
                self._lines.append(line.strip())
            start += len(line) + 1

    def before(self, end: int) -> str:
        """The last heading line that ends (its line break included) before ``end``."""
        found = bisect.bisect_left(self._ends, end)
        return self._lines[found - 1] if found else ""


class Chunker:
    def __init__(self, chunk_size: int = 500, chunk_overlap: int = 50):
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        self._splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap, add_start_index=True)

    def split(self, pages: Iterable[Page], label: str = "") -> Iterator[Chunk]:
        """Chunks of ``pages``; ``label`` names their document in each header ("MANCHESTER UNITED 20-F 2022")."""
        for page in pages:
            title, headings = page_title(page.text), Headings(page.text)
            for piece in self._splitter.create_documents([page.text]):
                if piece.page_content.strip():
                    above = headings.before(piece.metadata["start_index"])
                    header = " | ".join(dict.fromkeys(part for part in (label, *title, above) if part))
                    yield Chunk(page.document, page.page_index, piece.page_content, header)
