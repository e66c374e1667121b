"""Output formats, each chosen from a registry by the file's extension.

Answer records (``--out`` of a batch): ``.jsonl`` holds the record of ``main.py --json`` plus ``id``, ``doc`` and
``error``; ``.csv`` one flat row per question. Each format can also read back what an earlier run wrote, so that a
rerun resumes. Tables (``--each-doc``): ``.csv`` or ``.md`` (Markdown), one row per document.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence, TextIO

from docqa.errors import InputError

CSV_COLUMNS = [
    "id", "question", "doc", "answer", "answered", "model", "document", "page", "passage", "sources", "searched",
    "notes", "retrieval_s", "generation_s", "tokens", "total_s", "error",
]
# The columns of batch CSVs that earlier versions wrote (before ``searched``, before ``model`` too, and before
# ``answered``): a run resuming into such a file keeps them.
_EARLIER_CSV_COLUMNS = [
    [column for column in CSV_COLUMNS if column not in added]
    for added in (("searched",), ("searched", "model"), ("searched", "model", "answered"))
]


@contextmanager
def long_csv_fields() -> Iterator[None]:
    """csv's limit of 128 KiB a field lifted while reading: a question, an answer or a passage may be longer (and
    a batch writes them whole)."""
    previous = csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def extension(path: Path) -> str:
    return path.suffix.lower().lstrip(".")


def open_for_writing(path: Path, mode: str) -> TextIO:
    """``path`` opened for UTF-8 text output, its folder made if need be; any reason it cannot be is an InputError.

    Text that is not valid Unicode (a lone surrogate, which a JSON question may hold as ``\\ud800``) is written as
    its backslash escape, which JSON reads back as the same text, instead of stopping the run.
    """
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "it is a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, mode, encoding="utf-8", errors="backslashreplace", newline="")
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"cannot write to {path}: a folder on its path is a file") from None
    except OSError as exc:
        raise InputError(f"cannot write to {path}: {exc.strerror or exc}") from None


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same path, one through a link, or two hard links of one file."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return Path(a).resolve() == Path(b).resolve()


def check_writable(path: Path) -> None:
    """An InputError now if ``path`` could not be written later; the file, if it exists, is left as it is, and
    what the check made (the file, its folders) is removed again."""
    path = Path(os.path.realpath(path))  # a dangling link's target is made and removed, never the link itself
    existed = path.exists()
    made = [folder for folder in path.parents if not folder.exists()]  # the deepest first
    try:
        open_for_writing(path, "a").close()
        if not existed:
            path.unlink(missing_ok=True)
    finally:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # not made by the check after all, or not empty
                break


def new_file_beside(target: Path) -> Optional[Path]:
    """A new empty file in ``target``'s folder, with ``target``'s permissions and, where it may, owner (or a new
    file's), to be renamed over it once written whole; None where the folder takes no new file. Its name is
    short (one made from a long ``target``'s name could be too long) and nobody else's."""
    import stat
    import tempfile

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=".docqa-", suffix=".part")
    except OSError:
        return None
    os.close(descriptor)
    try:
        status = target.stat()
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)
        return Path(name)
    try:
        os.chown(name, status.st_uid, status.st_gid)  # as root, or a group of one's own; else the owner is ours
    except OSError:
        pass
    os.chmod(name, stat.S_IMODE(status.st_mode))
    return Path(name)


# ---------------------------------------------------------------- answer records


class Entry(NamedTuple):
    """One record an earlier run wrote: its id and question, whether it failed (an error), whether it holds an
    answer (a retrieval-only run's records hold passages only), its text, the documents it searched (the
    file-name patterns as the CSV column writes them; None where the record does not say) and the model that
    answered."""

    id: str
    question: str
    ok: bool
    answered: bool
    text: str
    doc: Optional[str] = None
    model: Optional[str] = None  # the model that answered, where the record says


# Every record a batch writes has these; a JSON line without them is somebody else's data, not a record to resume.
RECORD_KEYS = frozenset({"id", "question", "answer", "error"})


def _not_records(path: Path, where: str) -> InputError:
    return InputError(f"{path} is not a docqa results file ({where} is no record a batch writes); "
                      f"choose another --out")


def _cut_short(number: int, count: int, text: str) -> bool:
    """Only the last line of a file that does not end its last line can be a record a killed run cut short."""
    return number == count and not text.endswith("\n")


class RecordFormat(ABC):
    """How answer records look in one file format, written and read back."""

    name: str

    def header(self) -> str:
        """Text that starts a new file."""
        return ""

    @abstractmethod
    def line(self, record: dict) -> str: ...

    @abstractmethod
    def entries(self, text: str, path: Path) -> tuple[list[Entry], int]:
        """The complete records in ``text`` and how many were cut short (by a killed run)."""


class JsonlRecords(RecordFormat):
    name = "jsonl"

    def line(self, record: dict) -> str:
        return json.dumps(record, ensure_ascii=False) + "\n"

    def entries(self, text: str, path: Path) -> tuple[list[Entry], int]:
        entries, dropped = [], 0
        # Split at line feeds only: a record holds U+2028 and the like as they are (ensure_ascii=False), which
        # str.splitlines() would take for line ends.
        lines = text.split("\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if _cut_short(number, len(lines), text):
                    dropped += 1
                    continue
                raise _not_records(path, f"line {number}") from None
            if not isinstance(record, dict) or not RECORD_KEYS <= record.keys():
                raise _not_records(path, f"line {number}")
            entries.append(Entry(str(record["id"]), str(record["question"]), not record["error"],
                                 record["answer"] is not None, line + "\n",
                                 patterns(record["doc"]) if "doc" in record else None, record.get("model")))
        return entries, dropped


class CsvRecords(RecordFormat):
    name = "csv"

    def __init__(self) -> None:
        self.columns = CSV_COLUMNS  # or those of the file resumed into

    def header(self) -> str:
        return _csv_line(self.columns)

    def line(self, record: dict) -> str:
        return _csv_line([cell for column, cell in zip(CSV_COLUMNS, csv_row(record)) if column in self.columns])

    def entries(self, text: str, path: Path) -> tuple[list[Entry], int]:
        with long_csv_fields():
            rows = list(csv.reader(io.StringIO(text, newline="")))
        if not rows:
            return [], 0
        if rows[0] != CSV_COLUMNS and rows[0] not in _EARLIER_CSV_COLUMNS:
            raise InputError(f"{path} exists with other columns than a docqa batch writes; choose another --out")
        self.columns = rows[0]
        entries, dropped = [], 0
        for number, row in enumerate(rows[1:], 2):
            if len(row) != len(self.columns) or not row[0]:
                if _cut_short(number, len(rows), text):
                    dropped += 1
                    continue
                raise _not_records(path, f"row {number}")
            model = row[self.columns.index("model")] if "model" in self.columns else ""
            entries.append(Entry(row[0], row[1], row[-1] == "", row[3] != "", _csv_line(row), row[2], model or None))
        return entries, dropped


RECORD_FORMATS: dict[str, type[RecordFormat]] = {"jsonl": JsonlRecords, "ndjson": JsonlRecords, "csv": CsvRecords}


def record_format(path: Path) -> RecordFormat:
    try:
        return RECORD_FORMATS[extension(path)]()
    except KeyError:
        # .json too: the records are JSON Lines, which json.load of a .json file refuses ("Extra data")
        raise InputError(f"--out {path}: use a .jsonl (JSON Lines, one record per line) or .csv file name (the "
                         "extension picks the format)") from None


def csv_row(record: dict) -> list:
    sources = record.get("sources") or []
    timings = record.get("timings") or {}
    top = sources[0] if sources else {}
    return [
        record["id"],
        record.get("question") or "",
        patterns(record.get("doc")),
        record.get("answer") or "",
        {True: "yes", False: "no"}.get(record.get("answered"), ""),  # empty without an answer
        record.get("model") or "",
        top.get("document", ""),
        top.get("page_number", ""),
        collapse(top.get("text", "")),
        "; ".join(f"{source['document']} p.{source['page_number']}" for source in sources),
        _searched_text(record.get("searched")),
        " | ".join(record.get("notes") or []),
        _seconds(timings.get("retrieval")),
        _seconds(timings.get("generation")),
        timings.get("tokens", "") if timings.get("generation") is not None else "",
        _seconds(timings.get("total")),
        record.get("error") or "",
    ]


def _searched_text(searched: Optional[dict]) -> str:
    """The Searched line of the command line: a search that fell back to every document looked like a narrowed one."""
    from docqa.retrieval import Searched

    if not searched:
        return ""
    fields = {field.name for field in dataclasses.fields(Searched)}  # a record may hold more (a later version's)
    return Searched(**{key: tuple(value) if isinstance(value, list) else value
                       for key, value in searched.items() if key in fields}).summary()


def patterns(doc) -> str:
    """A record's ``doc`` as a CSV cell writes it: one file-name pattern as it is, several as a JSON list (which a
    questions CSV reads back as those patterns: joined by commas, they were one pattern that matched nothing), or
    none."""
    if isinstance(doc, (list, tuple)):
        return json.dumps(list(doc), ensure_ascii=False) if len(doc) > 1 else doc[0] if doc else ""
    return doc or ""


def pattern_list(cell: str):
    """The patterns a ``doc`` cell holds: a JSON list of texts, or one pattern."""
    if cell.startswith("["):
        try:
            patterns = json.loads(cell)
        except json.JSONDecodeError:
            return cell  # a glob such as [ab]*.pdf
        if isinstance(patterns, list) and all(isinstance(pattern, str) for pattern in patterns):
            return patterns
    return cell


def same_scope(written: str, scope: str) -> bool:
    """Whether a record's ``doc`` cell and this run's name the same patterns (an earlier docqa joined several with
    ", ")."""
    def key(cell: str) -> set[str]:
        patterns = pattern_list(cell)
        return set(patterns) if isinstance(patterns, list) else {part for part in cell.split(", ")}
    return written == scope or key(written) == key(scope)


FORMULA_START = re.compile(r"^[=+\-@\t\r]")


def _as_text(value) -> str:
    text = str(value)
    return "'" + text if FORMULA_START.match(text) else text


def _csv_line(values: Sequence) -> str:
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(values)
    return line.getvalue()


def _seconds(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.3f}"


def collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# ---------------------------------------------------------------- tables


class TableWriter(ABC):
    """Writes a table row by row, each flushed as soon as it exists."""

    def __init__(self, handle: TextIO):
        self.handle = handle

    def row(self, values: Sequence[str], *, header: bool = False) -> None:
        self.handle.write(self._format(values, header))
        self.handle.flush()

    @abstractmethod
    def _format(self, values: Sequence[str], header: bool) -> str: ...


class CsvTable(TableWriter):
    """A table for a spreadsheet, so a cell that would start a formula (a file named "=HYPERLINK(...).pdf", an
    answer that begins with "=") is kept as text with a leading apostrophe, as the web page's CSV download does."""

    def _format(self, values: Sequence[str], header: bool) -> str:
        return _csv_line([_as_text(value) for value in values])


class MarkdownTable(TableWriter):
    def _format(self, values: Sequence[str], header: bool) -> str:
        line = "| " + " | ".join(collapse(value).replace("|", "\\|") for value in values) + " |\n"
        return line + ("|" + "|".join(" --- " for _ in values) + "|\n" if header else "")


TABLE_FORMATS: dict[str, type[TableWriter]] = {"csv": CsvTable, "md": MarkdownTable}


def table_format(path: Optional[Path]) -> str:
    """The table format for ``--out`` (Markdown on stdout when there is none)."""
    if path is None:
        return "md"
    if extension(path) not in TABLE_FORMATS:
        raise InputError(f"--out {path}: --each-doc writes a .csv or .md table")
    return extension(path)


def holds_a_table(path: Path) -> bool:
    """Whether ``path`` is missing, empty or a table that each-doc wrote (its header: document, then "ID: question"
    and "ID page" for each question): what a new table may replace. A batch's answers, a file of questions or a
    table of the user's own whose first column is headed "document" is not."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle, long_csv_fields():
            first = handle.readline()
            if first.startswith("|"):  # Markdown: cells between unescaped bars
                cells = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", first.strip())[1:-1]]
            else:
                handle.seek(0)
                cells = next(csv.reader(handle), [])
    except FileNotFoundError:
        return True
    except OSError:  # a folder, or unreadable: writing it fails later with its own reason
        return True
    if not first.strip():
        return True
    if len(cells) < 3 or len(cells) % 2 == 0 or cells[0] != "document":
        return False
    pairs = zip(cells[1::2], cells[2::2])
    return all(page.endswith(" page") and question.startswith(page[: -len("page")].rstrip() + ": ")
               for question, page in pairs)


def table_rows(path: Path, fmt: str) -> int:
    """How many rows (not counting the header) a table in ``path`` holds."""
    with open(path, encoding="utf-8", errors="replace", newline="") as handle, long_csv_fields():
        if fmt == "csv":
            return max(sum(1 for _ in csv.reader(handle)) - 1, 0)
        return max(sum(1 for line in handle if line.startswith("|")) - 2, 0)  # a cell's line breaks are collapsed


def free_name(path: Path) -> Path:
    """``path``, or where it is taken (by anything, a folder or a dangling link too) NAME-2.ext, NAME-3.ext, ..."""
    candidate, number = path, 1
    while os.path.lexists(candidate):
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def table_writer(handle: TextIO, fmt: str) -> TableWriter:
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"unknown table format {fmt!r}")
    return TABLE_FORMATS[fmt](handle)
