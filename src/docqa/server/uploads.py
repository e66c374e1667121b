"""Uploaded PDFs into the data folder: checked names, a size limit, the PDF signature, no silent overwrite.

A file is written under a hidden temporary name (which neither the index nor the watcher reads) and renamed
into place only when it is whole, so a build never sees half an upload.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from docqa.documents import shown

# The PDF specification lets a reader look for the header this far into the file.
HEADER_WINDOW = 1024
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


class UploadRejected(Exception):
    """An upload that is refused whole; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def name_taken(name: str) -> UploadRejected:
    return UploadRejected(409, f"{name} already exists; upload it with ?replace=true to replace it")


@dataclass
class Upload:
    """A checked upload, written under a temporary name until ``place()`` moves it into the data folder."""

    name: str
    size: int
    replaces: bool
    temporary: Path

    def place(self, data: Path) -> None:
        """Move the upload into place. A new name is claimed atomically (a hard link fails where the name exists),
        so that of two uploads of one new name at the same moment the second is refused, not written over the
        first; UploadRejected (409) then. A replacement replaces."""
        target = data / self.name
        if self.replaces:
            os.replace(self.temporary, target)
            return
        try:
            os.link(self.temporary, target)
        except FileExistsError:
            raise name_taken(self.name) from None
        except OSError:  # a file system without hard links: the name is checked, then taken
            if target.exists() or target.is_symlink():
                raise name_taken(self.name) from None
            os.replace(self.temporary, target)
            return
        self.temporary.unlink()

    def withdraw(self, data: Path) -> None:
        """Undo ``place`` of a new name (a later file of the same upload was refused): the file is this upload's."""
        if not self.replaces:
            (data / self.name).unlink(missing_ok=True)

    def discard(self) -> None:
        self.temporary.unlink(missing_ok=True)


def safe_name(filename: str | None) -> str:
    """The name an uploaded file is stored under, or UploadRejected (400, or 415 for a name not ending in .pdf)."""
    name = (filename or "").strip()
    if not name:
        raise UploadRejected(400, "the upload has no file name")
    if _UNSAFE.search(name):
        raise UploadRejected(400, f"file name '{shown(name)}' holds a path separator or a control character")
    if name.startswith(".") or name in ("..", "."):
        raise UploadRejected(400, f"file name '{shown(name)}' is hidden or refers to a folder")
    if len(name.encode("utf-8")) > 255:
        raise UploadRejected(400, "file name is longer than 255 bytes")
    if not name.lower().endswith(".pdf"):
        raise UploadRejected(415, f"{shown(name)}: only PDF files (*.pdf) can be uploaded")
    return name


def stage_upload(data: Path, filename: str | None, source: BinaryIO, *, indexed: set[str], replace: bool,
                 limit: int) -> Upload:
    """Check one uploaded file and copy it next to its place in ``data``; ``indexed``: the names in the index."""
    name = safe_name(filename)
    target = data / name
    exists = target.exists() or target.is_symlink() or name in indexed
    if exists and not replace:
        raise name_taken(name)
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise UploadRejected(409, f"{name} exists and is not a plain file; an upload cannot replace it")
    data.mkdir(parents=True, exist_ok=True)
    temporary = data / f".upload-{uuid.uuid4().hex}.part"
    try:
        size = _copy_checked(source, temporary, name, limit)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return Upload(name, size, exists, temporary)


def _copy_checked(source: BinaryIO, target: Path, name: str, limit: int) -> int:
    head = source.read(HEADER_WINDOW)
    if not head:
        raise UploadRejected(415, f"{name} is empty (0 bytes), not a PDF")
    if b"%PDF-" not in head:
        raise UploadRejected(415, f"{name} is not a PDF (no %PDF- header)")
    size = len(head)
    with open(target, "wb") as out:
        out.write(head)
        while block := source.read(1 << 20):
            size += len(block)
            if size > limit:
                raise UploadRejected(413, f"{name} is larger than the upload limit ({limit / 1e6:g} MB)")
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return size
