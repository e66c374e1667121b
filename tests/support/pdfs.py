"""A small, dependency-free PDF writer, and makers of the broken PDFs ingestion must survive.

``write_pdf`` draws each string on its own Letter page in Helvetica with a real text layer
(WinAnsiEncoding, so Latin-1 text such as "£" and "é" extracts back intact).
Only ``encrypt_pdf`` needs a package: pypdf, plus cryptography for AES.
"""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

PAGE_WIDTH, PAGE_HEIGHT = 612, 792
MARGIN = 54
FONT_SIZE = 10
LEADING = 12
# Helvetica averages about half an em per character: 90 characters fit the 504pt text width.
LINE_CHARS = 90
MAX_LINES = (PAGE_HEIGHT - 2 * MARGIN) // LEADING

_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
_SCAN_SIZE = 16


class _PdfBuilder:
    """Numbers objects as they are added and writes them with a byte-exact cross-reference table."""

    def __init__(self) -> None:
        self.objects: list[bytes] = []

    def add(self, body: bytes) -> int:
        self.objects.append(body)
        return len(self.objects)

    def reserve(self) -> int:
        return self.add(b"null")

    def set(self, number: int, body: bytes) -> None:
        self.objects[number - 1] = body

    def render(self, root: int, info: int | None) -> bytes:
        # The comment's high bytes mark the file as binary for transfer tools.
        out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for number, body in enumerate(self.objects, start=1):
            offsets.append(len(out))
            out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
        xref_at = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(self.objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
        info_entry = b" /Info %d 0 R" % info if info else b""
        out += b"trailer\n<< /Size %d /Root %d 0 R%s >>\n" % (len(self.objects) + 1, root, info_entry)
        out += b"startxref\n%d\n%%%%EOF\n" % xref_at
        return bytes(out)


def _stream(data: bytes, entries: bytes = b"") -> bytes:
    return b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(data), entries, data)


def _literal(text: str) -> bytes:
    try:
        encoded = text.encode("cp1252")
    except UnicodeEncodeError as exc:
        raise ValueError(f"character {exc.object[exc.start]!r} is outside WinAnsiEncoding") from None
    return b"(" + encoded.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _text_string(text: str) -> bytes:
    """A PDF text string in UTF-16BE, which holds any character a title may have."""
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode() + b">"


def _wrap_lines(text: str) -> list[str]:
    """Lines as drawn: each input line wrapped at LINE_CHARS, blank lines kept."""
    lines = []
    for line in text.splitlines():
        lines.extend(textwrap.wrap(line, LINE_CHARS, drop_whitespace=True) or [""])
    return lines


def _text_content(text: str) -> bytes:
    lines = _wrap_lines(text)
    if len(lines) > MAX_LINES:
        raise ValueError(f"page text needs {len(lines)} lines, a page holds {MAX_LINES}")
    top = PAGE_HEIGHT - MARGIN - FONT_SIZE
    drawn = b"".join(_literal(line) + b" Tj T*\n" for line in lines)
    return b"BT\n/F1 %d Tf\n%d TL\n%d %d Td\n%sET" % (FONT_SIZE, LEADING, MARGIN, top, drawn)


def _scan_image() -> bytes:
    """A grey, paper-like raster: what a scanner produces, with nothing to extract."""
    noise = random.Random(0)
    pixels = bytes(200 + noise.randrange(40) for _ in range(_SCAN_SIZE * _SCAN_SIZE))
    entries = b" /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent 8" % (
        _SCAN_SIZE,
        _SCAN_SIZE,
    )
    return _stream(pixels, entries)


def _write(path: Path | str, builder: _PdfBuilder, contents: list[bytes], resources: bytes, title: str | None) -> Path:
    """Add the page tree over ``contents`` (one content stream per page) to ``builder`` and write the file."""
    pages_number = builder.reserve()
    resources_number = builder.add(resources)
    kids = []
    for content in contents:
        content_number = builder.add(_stream(content))
        kids.append(
            builder.add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] /Resources %d 0 R /Contents %d 0 R >>"
                % (pages_number, PAGE_WIDTH, PAGE_HEIGHT, resources_number, content_number)
            )
        )
    kid_refs = b" ".join(b"%d 0 R" % kid for kid in kids)
    builder.set(pages_number, b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kid_refs, len(kids)))
    root = builder.add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_number)
    info = builder.add(b"<< /Title %s >>" % _text_string(title)) if title else None
    path = Path(path)
    path.write_bytes(builder.render(root, info))
    return path


def write_pdf(path: Path | str, pages: list[str], *, title: str | None = None) -> Path:
    """Write one Letter page per string, lines wrapped at LINE_CHARS; returns the path.

    Raises ValueError for a character outside WinAnsiEncoding or a text longer than one page.
    """
    if not pages:
        raise ValueError("a PDF needs at least one page")
    builder = _PdfBuilder()
    font = builder.add(_FONT)
    contents = [_text_content(text) for text in pages]
    return _write(path, builder, contents, b"<< /Font << /F1 %d 0 R >> >>" % font, title)


def write_scanned_pdf(path: Path | str, page_count: int = 1) -> Path:
    """Write pages that each hold only an image, like a scan that never went through OCR."""
    builder = _PdfBuilder()
    image = builder.add(_scan_image())
    width, height = PAGE_WIDTH - 2 * MARGIN, PAGE_HEIGHT - 2 * MARGIN
    content = b"q %d 0 0 %d %d %d cm /Im1 Do Q" % (width, height, MARGIN, MARGIN)
    return _write(path, builder, [content] * page_count, b"<< /XObject << /Im1 %d 0 R >> >>" % image, None)


def encrypt_pdf(source: Path | str, target: Path | str, *, user_password: str = "") -> Path:
    """Copy ``source`` to ``target`` encrypted with AES-256, as SEC filings often are.

    An empty user password lets anyone open the file (only editing is restricted);
    a non-empty one must be typed to open it.
    """
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=source)
    writer.encrypt(user_password=user_password, owner_password="docqa-owner", algorithm="AES-256")
    target = Path(target)
    with target.open("wb") as handle:
        writer.write(handle)
    return target


def write_corrupt_pdf(path: Path | str) -> Path:
    """A PDF header and end marker around noise: no object survives."""
    noise = random.Random(1).randbytes(4096)
    path = Path(path)
    path.write_bytes(b"%PDF-1.7\n" + noise + b"\n%%EOF\n")
    return path


def write_truncated_pdf(path: Path | str, source: Path | str) -> Path:
    """The first half of ``source``, like an interrupted download."""
    data = Path(source).read_bytes()
    path = Path(path)
    path.write_bytes(data[: len(data) // 2])
    return path


def make_bad_corpus(folder: Path | str) -> dict[str, Path]:
    """Write one file per kind of unreadable PDF into ``folder``; returns {kind: path}.

    Kinds: corrupt, truncated, zero_byte, not_pdf, scanned, encrypted (non-empty user password).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    good = write_pdf(folder / "good.tmp", ["A page that exists only to be damaged or locked."])
    corpus = {
        "corrupt": write_corrupt_pdf(folder / "corrupt.pdf"),
        "truncated": write_truncated_pdf(folder / "truncated.pdf", good),
        "zero_byte": folder / "zero_byte.pdf",
        "not_pdf": folder / "not_pdf.pdf",
        "scanned": write_scanned_pdf(folder / "scanned.pdf", page_count=2),
        "encrypted": encrypt_pdf(good, folder / "encrypted.pdf", user_password="secret"),
    }
    corpus["zero_byte"].write_bytes(b"")
    corpus["not_pdf"].write_text("Quarterly notes, saved as text and renamed.\n", encoding="utf-8")
    good.unlink()
    return corpus
