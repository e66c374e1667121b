"""PDF files to page texts: find them, read them, and turn every unreadable file into one DocumentError."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import stat
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from docqa.errors import DocumentError

EXTRACTORS = ("pypdfium2", "pypdf")
# The PDF specification lets readers look for the header and the end marker this far from either end.
_MARKER_WINDOW = 1024
# Files padded after %%EOF (by transfers in fixed-size blocks, or scanners' trailing zeros): viewers open them,
# so the end marker is also looked for this far back when only padding follows it.
_PADDED_WINDOW = 1 << 20
_PADDING = b"\x00 \t\r\n\x0c"
# Lone surrogates too: a broken font map can make an extractor return them, and no encoder or tokenizer takes them.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
# pypdf writes a table cell per line with blank lines between; they only waste chunk space.
_BLANK_LINE_RUNS = re.compile(r"\n{3,}")

# PDFium is not thread-safe: one call into it at a time in a process, whatever the document (two page images
# rendered at once by the web app's threads broke every later render with "Data format error").
PDFIUM = threading.RLock()

NEEDS_PASSWORD = "encrypted with a password; decrypt it first (e.g. qpdf --decrypt --password=... in.pdf out.pdf)"
DAMAGED = "damaged PDF: its structure cannot be parsed"
NO_TEXT_LAYER = "no text layer (scanned?): needs OCR, nothing indexed"


@dataclass(frozen=True)
class Page:
    """The text of one page; ``page_index`` counts from 0, ``document`` is the file name."""

    document: str
    page_index: int
    text: str


def composed(name: str) -> str:
    """``name`` with its accents composed (NFC): a file copied from a Mac is named "Gescha\u0308ftsbericht.pdf" (a and
    a combining diaeresis), which "Geschäft*" as typed did not match."""
    return unicodedata.normalize("NFC", name)


def name_as_text(name: str) -> str:
    """A file name whose bytes are not UTF-8 (another system's encoding; Python keeps each such byte as a lone
    surrogate, which no output can encode) with those bytes written as \\xNN: "caf\\xe9.pdf" (the byte E9, as ``ls``
    shows it in octal, \\351), not Python's "caf\\udce9.pdf", which the user cannot match to the file."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte (a JSON "\\ud800")
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def shown(name: str) -> str:
    """A file name (or a message naming one) on one line of text output: line breaks and other control characters
    escaped as in Python, bytes that are not UTF-8 as \\xNN; a backslash stays one (repr() doubled it, so
    'C:\\\\Users\\\\report.pdf' was not the name the user sent)."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
                   for char in name_as_text(name))


def find_pdfs(folder: Path | str, on_unreadable: Callable[[Path, str], None] | None = None,
              on_broken_link: Callable[[Path, str], None] | None = None) -> list[Path]:
    """Every regular file named *.pdf (any case) under ``folder``, sorted.

    Symlinked folders are followed, each real folder once, so a symlink loop ends the walk
    instead of hanging it. A folder that cannot be listed is skipped and, below ``folder``,
    passed to ``on_unreadable`` with the reason. A link that leads nowhere now is a file that cannot be read
    when it is named *.pdf, and otherwise passed to ``on_broken_link`` (it may be a folder on a drive not
    mounted). Hidden files and folders (named ``.*``) are passed over.
    """
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()
    pending = [Path(folder)]
    while pending:
        directory = pending.pop()
        identity = _folder_identity(directory)
        if identity is None or identity in visited:
            continue
        visited.add(identity)
        try:
            entries = _list_folder(directory)
        except OSError as exc:
            if on_unreadable is not None and directory != Path(folder):
                on_unreadable(directory, _os_reason(exc, "folder"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                # Hidden: an editor's lock file (.#report.pdf), the resource fork a Mac writes beside each file it
                # copies (._report.pdf), a desktop's trash (.Trash-1000/files/), a tool's own folder.
                continue
            if _is_folder(entry):
                pending.append(Path(entry.path))
            elif entry.name.lower().endswith(".pdf") and _is_file(entry):
                found.append(Path(entry.path))
            elif not _leads_nowhere(entry):
                continue
            elif entry.name.lower().endswith(".pdf"):
                found.append(Path(entry.path))  # a file that cannot be read now, and says so
            elif on_broken_link is not None:
                on_broken_link(Path(entry.path), broken_link(Path(entry.path)))
    return sorted(found)


def _leads_nowhere(entry: os.DirEntry) -> bool:
    """A symbolic link whose target cannot be reached (deleted, or on a drive not mounted)."""
    try:
        return entry.is_symlink() and not os.path.exists(entry.path)
    except OSError:
        return False


def broken_link(path: Path) -> str:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return f"a link to {target}, which cannot be reached now"


def _folder_identity(directory: Path) -> tuple[int, int] | None:
    try:
        status = directory.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _list_folder(directory: Path) -> list[os.DirEntry]:
    with os.scandir(directory) as entries:
        return list(entries)


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file(follow_symlinks=True)
    except OSError:
        return False


def file_state(path: Path | str) -> tuple:
    """What tells that a file changed without reading it: its size, modification and change times, and inode."""
    try:
        status = os.stat(path)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    return status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino


def file_digest(path: Path | str) -> str:
    """SHA-256 of the file's bytes in hex, read in blocks."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path | str, exc: OSError) -> DocumentError:
    if isinstance(exc, FileNotFoundError) and os.path.islink(path):
        return DocumentError(path, broken_link(Path(path)))
    return DocumentError(path, _os_reason(exc))


def read_pages(path: Path | str, extractor: str = "pypdfium2", *, max_pages: int | None = None,
               damaged: list[str] | None = None) -> list[Page]:
    """One Page per page of the PDF at ``path``, in order; pages without text have text "".

    A page that cannot be read (a damaged page object or content stream) has text "" too, so that the others keep
    their page numbers, and ``damaged`` receives why ("page 2 (PdfiumError)").
    ``max_pages`` stops after that many pages, for previews and quick checks.
    Raises DocumentError, with a reason a user can act on, for any file that yields no text.
    """
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown extractor {extractor!r}; expected one of {', '.join(EXTRACTORS)}")
    path = Path(path)
    _check_container(path)
    extract = _pdfium_texts if extractor == "pypdfium2" else _pypdf_texts
    unreadable: list[str] = []
    texts = itertools.islice(extract(path, unreadable), max_pages)
    pages = [Page(path.name, index, normalise_text(text)) for index, text in enumerate(texts)]
    if not pages:
        raise DocumentError(path, "the PDF has no pages")
    if not any(page.text for page in pages):
        raise DocumentError(path, f"{DAMAGED}: no page can be read ({unreadable[0]})" if unreadable else NO_TEXT_LAYER)
    if damaged is not None:
        damaged += unreadable
    return pages


def page_count(path: Path | str) -> int:
    """Pages in the PDF, cheaply (no text extracted), for progress estimates; 0 when it cannot be opened."""
    import pypdfium2 as pdfium

    try:
        with PDFIUM, pdfium.PdfDocument(path) as document:
            return len(document)
    except (pdfium.PdfiumError, OSError):
        return 0


def normalise_text(text: str) -> str:
    """Unix line breaks kept (a table row stays one line); control characters, trailing spaces and runs of blank lines cut."""
    # PDFium writes a hyphen that ends a line as U+FFFE and drops the line break: "forward\ufffelooking" is
    # "forward-looking" on the page (33 in the Manchester United report, all compounds); deleted with the other
    # non-characters it made "forwardlooking", which no answer string, search word or reader matches.
    text = text.replace("\ufffe", "-")
    text = _CONTROL_CHARS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_LINE_RUNS.sub("\n\n", text).strip("\n")


def check_header(path: Path | str) -> None:
    """DocumentError for what is no PDF at all (empty, another kind of file named .pdf, not a regular file), read
    from its first bytes: a build checks it before hashing the whole file."""
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            # Opening a named pipe would block forever.
            raise DocumentError(path, "not a regular file")
        with open(path, "rb") as handle:
            head = handle.read(_MARKER_WINDOW)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    if not head:
        raise DocumentError(path, "empty file (0 bytes)")
    if b"%PDF-" not in head:
        raise DocumentError(path, "not a PDF (no %PDF- header): another kind of file named .pdf?")


def _check_container(path: Path) -> None:
    """Reject what is not a whole PDF before a parser sees it; parsers' own messages are cryptic."""
    check_header(path)
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _PADDED_WINDOW))
            tail = handle.read()
    except OSError as exc:
        raise DocumentError(path, _os_reason(exc)) from None
    if b"%%EOF" not in tail.rstrip(_PADDING)[-_MARKER_WINDOW:]:
        raise DocumentError(path, "truncated PDF (no %%EOF end marker): copy or download it again")


def _os_reason(exc: OSError, what: str = "file") -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{what} not found"
    if isinstance(exc, PermissionError):
        return f"permission denied: cannot read the {what}"
    return f"cannot read the {what}: {exc.strerror or exc}"


def _pdfium_texts(path: Path, unreadable: list[str]) -> Iterator[str]:
    import pypdfium2 as pdfium

    try:
        with PDFIUM:
            document = pdfium.PdfDocument(path)
            pages = len(document)
    except pdfium.PdfiumError as exc:
        # PDFium refuses a document without pages but sets no error for it: the code is then an earlier file's.
        reason = "the PDF has no pages" if _without_pages(path) else _pdfium_reason(exc.err_code)
        raise DocumentError(path, reason) from None
    except OSError as exc:
        raise DocumentError(path, _os_reason(exc)) from None
    try:
        for index in range(pages):  # the lock is taken page by page: the caller does other work between pages
            yield _guarded(index, lambda: _pdfium_page_text(document, index), unreadable)
    finally:
        with PDFIUM:
            document.close()


def _pdfium_page_text(document, index: int) -> str:
    with PDFIUM:
        page = document[index]
        try:
            text_page = page.get_textpage()
            try:
                return text_page.get_text_range()
            finally:
                text_page.close()
        finally:
            page.close()


def _without_pages(path: Path) -> bool:
    from pypdf import PdfReader

    try:
        return len(PdfReader(path).pages) == 0
    except Exception:  # damaged for pypdf too
        return False


def _pdfium_reason(err_code: int | None) -> str:
    import pypdfium2.raw as pdfium_c

    reasons = {
        pdfium_c.FPDF_ERR_PASSWORD: NEEDS_PASSWORD,
        pdfium_c.FPDF_ERR_SECURITY: "encrypted with an unsupported security scheme; decrypt it first",
        pdfium_c.FPDF_ERR_FILE: "cannot read the file",
    }
    return reasons.get(err_code, DAMAGED)


def _pypdf_texts(path: Path, unreadable: list[str]) -> Iterator[str]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, WrongPasswordError

    try:
        reader = PdfReader(path)
        page_count = len(reader.pages)
    except (FileNotDecryptedError, WrongPasswordError):
        raise DocumentError(path, NEEDS_PASSWORD) from None
    except DependencyError:
        raise DocumentError(path, "AES-encrypted: the pypdf extractor needs the 'cryptography' package") from None
    except OSError as exc:
        raise DocumentError(path, _os_reason(exc)) from None
    except Exception as exc:  # pypdf raises many types on malformed input; all mean the same to a user
        raise DocumentError(path, f"{DAMAGED} ({exc})") from None
    for index in range(page_count):
        yield _guarded(index, lambda: reader.pages[index].extract_text(), unreadable)


def _guarded(index: int, extract: Callable[[], str], unreadable: list[str]) -> str:
    """The page's text; "" where the parser fails on the page (any exception type: parsers raise many), noted."""
    try:
        return extract()
    except Exception as exc:
        unreadable.append(f"page {index + 1} ({type(exc).__name__})")
        return ""
