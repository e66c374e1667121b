"""A PDF page as a PNG image, with the text of a cited passage highlighted where it appears on that page.

pypdfium2 renders the page and gives every character's box; the passage is found in the page's text with
whitespace ignored (extraction and chunking differ only in line breaks and spaces), and the boxes of the
characters it covers are tinted. A passage that starts on the previous page or runs onto the next one is
found line by line instead.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from docqa.documents import PDFIUM
from docqa.errors import DocumentError, InputError

MIN_LINE_CHARS = 12  # shorter lines of a passage are too common to be found on their own
TINT = np.array([1.0, 0.86, 0.35])  # multiplied into the pixels under the passage: a marker-pen yellow
MIN_SCALE = 0.25
MAX_SCALE = 4.0  # pixels per point: 288 dots per inch, the page viewer's sharpest render at 300 % zoom
MAX_PIXELS = 40_000_000  # a US Letter page at scale 4 is 2,448 × 3,168 = 7.8 million


class PageImage(NamedTuple):
    png: bytes
    # Where the passage is marked: (left, top, right, bottom) as fractions of the image's width and height, for a
    # viewer to bring into view (a zoomed page, or a passage low on a long page, was marked out of sight); None
    # where nothing is marked
    marked: Optional[tuple[float, float, float, float]] = None


def render_page(path: Path, page_number: int, *, highlight: Optional[str] = None, scale: float = 1.5) -> PageImage:
    """Page ``page_number`` (1-based) of the PDF at ``path`` as a PNG; ``highlight``: a passage to mark."""
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise InputError(f"scale must be between {MIN_SCALE} and {MAX_SCALE}")
    with PDFIUM:  # one render at a time: the server renders in several threads
        pixels, boxes = _rendered(path, page_number, highlight, scale)
    marked = None
    if boxes:
        pixels = pixels.astype(np.float32)
        margin = max(int(scale), 1)  # about a point around the text
        for x0, y0, x1, y1 in boxes:
            pixels[max(y0 - margin, 0):y1 + margin + 1, max(x0 - margin, 0):x1 + margin + 1] *= TINT
        pixels = pixels.astype(np.uint8)
        height, width = pixels.shape[:2]
        marked = (min(box[0] for box in boxes) / width, min(box[1] for box in boxes) / height,
                  max(box[2] for box in boxes) / width, max(box[3] for box in boxes) / height)
        marked = tuple(round(min(max(value, 0.0), 1.0), 4) for value in marked)
    return PageImage(encode_png(np.ascontiguousarray(pixels)), marked)


def _rendered(path: Path, page_number: int, highlight: Optional[str], scale: float) -> tuple[np.ndarray, list]:
    """The page's pixels (RGB) and the passage's boxes on them, with every PDFium object closed before returning."""
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(path)
    except (pdfium.PdfiumError, OSError) as exc:
        raise DocumentError(path, f"cannot be opened to render ({exc})") from None
    with document:
        if not 1 <= page_number <= len(document):
            raise InputError(f"page {page_number} does not exist; {Path(path).name} has {len(document)} pages")
        try:
            page = document[page_number - 1]
        except pdfium.PdfiumError as exc:  # a damaged page object
            raise DocumentError(path, f"page {page_number} cannot be rendered ({exc})") from None
        try:
            width, height = page.get_size()
            # A page box of absurd size (a damaged or hostile file) is drawn smaller rather than filling the memory
            scale = min(scale, (MAX_PIXELS / max(width * height, 1.0)) ** 0.5)
            bitmap = page.render(scale=scale, rev_byteorder=True)
            try:
                pixels = bitmap.to_numpy()[:, :, :3].copy()  # the bitmap's memory is PDFium's
            finally:
                bitmap.close()
            # The text's boxes are in the page's own coordinates; the image shows its crop box (whose corner need
            # not be the origin: 9 points in on the Manchester United report), turned by its /Rotate. PDFium maps
            # one to the other as it drew the image.
            boxes = [_on_image(page, box, pixels.shape[1], pixels.shape[0])
                     for box in passage_boxes(page, highlight)] if highlight else []
        except (pdfium.PdfiumError, MemoryError) as exc:
            raise DocumentError(path, f"page {page_number} cannot be rendered ({type(exc).__name__})") from None
        finally:
            page.close()
    return pixels, boxes


def _on_image(page, box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """A box in page coordinates (left, bottom, right, top) as pixels (x0, y0, x1, y1) of the page's image."""
    import ctypes

    import pypdfium2.raw as pdfium_c

    left, bottom, right, top = box
    xs, ys = [], []
    for x, y in ((left, bottom), (right, top)):
        device_x, device_y = ctypes.c_int(), ctypes.c_int()
        pdfium_c.FPDF_PageToDevice(page.raw, 0, 0, width, height, 0, x, y, device_x, device_y)
        xs.append(device_x.value)
        ys.append(device_y.value)
    return min(xs), min(ys), max(xs), max(ys)


def passage_boxes(page, passage: str) -> list[tuple[float, float, float, float]]:
    """Rectangles (left, bottom, right, top, in PDF points) covering ``passage`` on ``page``; [] where it is absent."""
    text_page = page.get_textpage()
    try:
        text = text_page.get_text_range()
        spans = find_spans(text, passage)
        boxes = []
        for start, end in spans:
            for index in range(text_page.count_rects(start, end - start)):
                boxes.append(text_page.get_rect(index))
        return boxes
    finally:
        text_page.close()


def find_spans(text: str, passage: str) -> list[tuple[int, int]]:
    """(start, end) character ranges of ``text`` that hold ``passage``, comparing without whitespace.

    The whole passage when it is there; otherwise each of its lines that is (a passage that crosses a page
    boundary, or that chunking cut mid-line).
    """
    compact, positions = _without_whitespace(text)
    whole = _span(compact, positions, passage)
    if whole:
        return [whole]
    spans = []
    for line in passage.splitlines():
        if len("".join(line.split())) >= MIN_LINE_CHARS:
            span = _span(compact, positions, line)
            if span:
                spans.append(span)
    return spans


def _without_whitespace(text: str) -> tuple[str, list[int]]:
    kept = [(index, char) for index, char in enumerate(text) if not char.isspace()]
    return "".join(char for _, char in kept), [index for index, _ in kept]


def _span(compact: str, positions: list[int], needle: str) -> Optional[tuple[int, int]]:
    needle = "".join(needle.split())
    if not needle:
        return None
    at = compact.find(needle)
    if at < 0:
        return None
    return positions[at], positions[at + len(needle) - 1] + 1


def encode_png(pixels: np.ndarray) -> bytes:
    """An RGB uint8 array (height, width, 3) as PNG bytes (no imaging library needed)."""
    height, width, _ = pixels.shape
    rows = np.hstack([np.zeros((height, 1), dtype=np.uint8), pixels.reshape(height, width * 3)])  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
