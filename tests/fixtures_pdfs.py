"""PDF fixtures: a factory for small text PDFs and a folder of broken ones."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from tests.support.pdfs import make_bad_corpus, write_pdf


@pytest.fixture
def make_pdf(tmp_path: Path) -> Callable[..., Path]:
    """``make_pdf(["page 1 text", "page 2 text"], name="report.pdf", title=None)`` writes under tmp_path."""

    def make(pages: list[str], name: str = "document.pdf", *, title: str | None = None) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_pdf(path, pages, title=title)

    return make


@pytest.fixture
def bad_corpus(tmp_path: Path) -> dict[str, Path]:
    """{kind: path} of unreadable PDFs in tmp_path/bad; see tests.support.pdfs.make_bad_corpus."""
    return make_bad_corpus(tmp_path / "bad")
