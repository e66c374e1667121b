"""documents: PDFs found, pages read back on the right index, and one DocumentError per bad file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from docqa import documents
from docqa.documents import EXTRACTORS, file_digest, find_pdfs, normalise_text, read_pages
from docqa.errors import DocumentError
from tests.support.pdfs import encrypt_pdf, write_pdf

SHARED_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "financebench"

PAGES = [
    "Item 7. Management's Discussion and Analysis.\nRevenue grew 12% to £4,210 million in fiscal 2023.",
    "The café segment opened 31 stores in Zürich and Besançon.",
    "Total revenue  £4,210  £3,759\nOperating income  £812  £640",
]

extractors = pytest.mark.parametrize("extractor", EXTRACTORS)


def squeeze(text: str) -> str:
    """Words in order with single spaces: extractors differ only in spacing."""
    return " ".join(text.split())


@extractors
def test_sentences_come_back_on_their_page(make_pdf, extractor):
    pdf = make_pdf(PAGES, "annual report.pdf")
    pages = read_pages(pdf, extractor)
    assert [page.page_index for page in pages] == [0, 1, 2]
    assert {page.document for page in pages} == {"annual report.pdf"}
    assert "Revenue grew 12% to £4,210 million in fiscal 2023." in squeeze(pages[0].text)
    assert "The café segment opened 31 stores in Zürich and Besançon." in squeeze(pages[1].text)


@extractors
def test_table_row_stays_on_one_line(make_pdf, extractor):
    text = read_pages(make_pdf(PAGES), extractor)[2].text
    assert "Total revenue £4,210 £3,759" in [squeeze(line) for line in text.splitlines()]


@extractors
def test_wrapped_paragraph_keeps_every_word(make_pdf, extractor):
    paragraph = " ".join(f"word{number} résumé" for number in range(150))
    pages = read_pages(make_pdf([paragraph]), extractor)
    assert squeeze(pages[0].text) == paragraph


@extractors
def test_empty_password_aes_file_opens(make_pdf, tmp_path, extractor):
    locked = encrypt_pdf(make_pdf(PAGES), tmp_path / "locked.pdf", user_password="")
    assert b"/Encrypt" in locked.read_bytes()
    pages = read_pages(locked, extractor)
    assert "The café segment" in pages[1].text


@extractors
def test_max_pages_stops_early(make_pdf, extractor):
    assert len(read_pages(make_pdf(PAGES), extractor, max_pages=2)) == 2


BAD_INPUTS = {
    "corrupt": "damaged PDF",
    "truncated": "truncated PDF",
    "zero_byte": "empty file",
    "not_pdf": "not a PDF",
    "scanned": "no text layer (scanned?): needs OCR",
    "encrypted": "encrypted with a password; decrypt it first",
}


@extractors
@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_raises_document_error(bad_corpus, kind, extractor):
    with pytest.raises(DocumentError) as caught:
        read_pages(bad_corpus[kind], extractor)
    assert BAD_INPUTS[kind] in caught.value.reason
    assert caught.value.path == bad_corpus[kind]


def test_missing_file_raises_document_error(tmp_path):
    with pytest.raises(DocumentError, match="file not found"):
        read_pages(tmp_path / "absent.pdf")


def test_folder_or_pipe_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "pipe.pdf")
    (tmp_path / "folder.pdf").mkdir()
    for path in (tmp_path / "pipe.pdf", tmp_path / "folder.pdf"):
        with pytest.raises(DocumentError, match="not a regular file"):
            read_pages(path)


def test_unknown_extractor_is_a_programming_error(make_pdf):
    with pytest.raises(ValueError, match="unknown extractor"):
        read_pages(make_pdf(PAGES), "ocr")


def test_unreadable_file_raises_document_error(make_pdf):
    pdf = make_pdf(PAGES)
    pdf.chmod(0)
    try:
        with open(pdf, "rb"):
            pytest.skip("this user reads files whatever their permissions (root)")
    except PermissionError:
        pass
    with pytest.raises(DocumentError, match="permission denied"):
        read_pages(pdf)


def test_permission_error_is_reported(make_pdf, monkeypatch):
    pdf = make_pdf(PAGES)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(pdf))

    monkeypatch.setattr(documents, "open", refuse, raising=False)
    with pytest.raises(DocumentError, match="permission denied"):
        read_pages(pdf)
    with pytest.raises(DocumentError, match="permission denied"):
        file_digest(pdf)


def test_file_digest_is_sha256_of_content(make_pdf, tmp_path):
    pdf = make_pdf(PAGES)
    copy = tmp_path / "copy.pdf"
    copy.write_bytes(pdf.read_bytes())
    assert file_digest(pdf) == hashlib.sha256(pdf.read_bytes()).hexdigest() == file_digest(copy)
    assert file_digest(make_pdf(["other"], "other.pdf")) != file_digest(pdf)


def test_normalise_text_is_light():
    raw = "Total  1,234   \r\nNet\x00 income \x0c\n\n\n\n\nNotes\t1 \n"
    assert normalise_text(raw) == "Total  1,234\nNet income\n\nNotes\t1"
    # A broken font map can give lone surrogates (pypdf passes them on): no tokenizer or database takes them.
    assert normalise_text("Revenue \ud800grew \udfff") == "Revenue grew"
    # PDFium's mark for a hyphen that ends a line: it was deleted with the non-characters ("forwardlooking")
    assert normalise_text("our forward\ufffelooking statements") == "our forward-looking statements"


MU_REPORT = SHARED_CORPUS.parent / "manu-20f-2022-09-24.pdf"


@pytest.mark.skipif(not MU_REPORT.is_file(), reason="shared Manchester United report not present")
def test_a_hyphen_that_ends_a_line_of_a_real_report_is_kept():
    """Its 33 line-end hyphens (forward-looking, cross-border, three-year) were dropped by the pypdfium2 reader."""
    text = read_pages(MU_REPORT, "pypdfium2", max_pages=3)[2].text
    assert "forward-looking" in text and "forwardlooking" not in text


@pytest.mark.parametrize("extractor", ["pypdfium2", "pypdf"])
def test_a_pdf_without_pages_says_so(tmp_path, extractor):
    from pypdf import PdfWriter

    from docqa.errors import DocumentError

    PdfWriter().write(tmp_path / "empty.pdf")
    with pytest.raises(DocumentError, match="the PDF has no pages"):
        read_pages(tmp_path / "empty.pdf", extractor)


def test_find_pdfs_walks_folders_and_skips_the_rest(tmp_path):
    data = tmp_path / "data"
    outside = tmp_path / "outside"
    for folder in (data / "2023" / "q4", outside):
        folder.mkdir(parents=True)
    expected = [
        data / "2023" / "q4" / "Rapport annuel café £.pdf",
        data / "B REPORT.PDF",
        data / "a.pdf",
        data / "linked" / "elsewhere.pdf",
    ]
    for path in (*expected[:3], outside / "elsewhere.pdf"):
        path.write_bytes(b"%PDF-")
    (data / "notes.txt").write_text("not a pdf")
    (data / "folder.pdf").mkdir()
    (data / "dangling.pdf").symlink_to(tmp_path / "gone.pdf")
    (data / "drive").symlink_to(tmp_path / "unmounted")
    (data / ".#a.pdf").symlink_to("user@host.1234:1700000000")  # an editor's lock file
    (data / "._a.pdf").write_bytes(b"\x00\x05\x16\x07")  # the resource fork a Mac writes beside a.pdf
    (data / ".Trash-1000" / "files").mkdir(parents=True)  # a desktop's trash
    (data / ".Trash-1000" / "files" / "deleted.pdf").write_bytes(b"%PDF-")
    os.mkfifo(data / "pipe.pdf")
    (data / "linked").symlink_to(outside)
    (data / "2023" / "loop").symlink_to(data)

    broken = []
    # A broken link is kept as a file, which cannot be read now, and the build says so instead of dropping its
    # document; one that is not named .pdf may be a folder on a drive not mounted.
    assert find_pdfs(data, on_broken_link=lambda path, reason: broken.append((path, reason))) == sorted(
        [*expected, data / "dangling.pdf"])
    assert broken == [(data / "drive", f"a link to {tmp_path / 'unmounted'}, which cannot be reached now")]


def test_find_pdfs_of_missing_folder_is_empty(tmp_path):
    assert find_pdfs(tmp_path / "absent") == []


def test_writer_rejects_what_it_cannot_draw(tmp_path):
    with pytest.raises(ValueError, match="WinAnsiEncoding"):
        write_pdf(tmp_path / "cjk.pdf", ["年次報告書"])
    with pytest.raises(ValueError, match="lines"):
        write_pdf(tmp_path / "long.pdf", ["line\n" * 200])


def test_writer_sets_title(tmp_path):
    from pypdf import PdfReader

    pdf = write_pdf(tmp_path / "titled.pdf", ["text"], title="Annual Report – Café")
    assert PdfReader(pdf).metadata.title == "Annual Report – Café"


REAL_FILINGS = {
    "ADOBE_2022_10K.pdf": "AES-256",
    "BESTBUY_2024Q2_10Q.pdf": "RC4-128",
    "AMAZON_2017_10K.pdf": "RC4-128",
}


@pytest.mark.skipif(not SHARED_CORPUS.is_dir(), reason="shared FinanceBench corpus not present")
@extractors
@pytest.mark.parametrize("name", REAL_FILINGS)
def test_real_encrypted_filings_open(name, extractor):
    pages = read_pages(SHARED_CORPUS / name, extractor, max_pages=2)
    assert [page.page_index for page in pages] == [0, 1]
    assert "SECURITIES AND EXCHANGE COMMISSION" in squeeze(pages[0].text)


@pytest.mark.parametrize("padding", [b"\x00" * 4096, b"\r\n" + b" " * 3000 + b"\n"])
def test_padding_after_the_end_marker_is_accepted(make_pdf, padding):
    path = make_pdf(["Revenue grew by nine percent."])
    with open(path, "ab") as handle:
        handle.write(padding)
    assert "nine percent" in read_pages(path)[0].text


def test_a_folder_that_cannot_be_listed_is_reported(tmp_path, monkeypatch):
    (tmp_path / "open").mkdir()
    (tmp_path / "locked").mkdir()
    write_pdf(tmp_path / "open" / "a.pdf", ["a"])
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(documents.os, "scandir", scandir)
    unreadable = []
    assert find_pdfs(tmp_path, lambda folder, reason: unreadable.append((folder, reason))) == [tmp_path / "open" / "a.pdf"]
    assert unreadable == [(tmp_path / "locked", "permission denied: cannot read the folder")]
