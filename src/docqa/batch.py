"""Many questions, one loaded model: batch files in and out, resumable runs, and the per-document table.

Input (``read_questions``), chosen by the file's extension:

- ``.jsonl`` / ``.ndjson`` / ``.json``: one JSON object per line with ``question`` and optional ``id``
  and ``doc`` (a glob over document file names, overriding ``--doc`` for that line);
- ``.csv``: a header row with a ``question`` column, optional ``id`` and ``doc`` columns;
- anything else: plain text, one question per line (blank lines and lines starting with ``#`` skipped).

A question without an id gets ``q<N>``: N is its line number in a text or JSONL file (1 = first line)
and its row number in a CSV file (1 = first row after the header). The id is the resume key, so ids
must be unique; editing the lines above a question changes its generated id.

Output (``BatchOutput``), by extension: ``.jsonl`` (the record of ``main.py --json`` plus ``id``, ``doc``
and ``error``) or ``.csv`` (one flat row per question). Every record is flushed when written; a rerun
with the same output skips the ids already answered and retries those recorded with an error.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, TextIO, Union

from docqa.errors import InputError

log = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_COLUMNS = [
    "id", "question", "doc", "answer", "document", "page", "passage", "sources", "notes",
    "retrieval_s", "generation_s", "tokens", "total_s", "error",
]
PASSAGE_CHARS = 300  # the top passage shown in an --each-doc cell when there is no LLM answer


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    doc: Optional[str] = None


QuestionLike = Union[Question, str, dict]


# ---------------------------------------------------------------- reading questions


def read_questions(path: Path | str) -> list[Question]:
    """The questions of a text, JSONL or CSV file (see the module docstring); raises InputError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"batch file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        questions = _jsonl_questions(path, text)
    elif suffix == ".csv":
        questions = _csv_questions(path, text)
    else:
        questions = [
            Question(f"q{number}", line.strip())
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    if not questions:
        raise InputError(f"{path}: no questions found")
    _check_unique(path, questions)
    return questions


def _jsonl_questions(path: Path, text: str) -> list[Question]:
    questions = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise InputError(f"{path}, line {number}: expected a JSON object with a \"question\"")
        questions.append(_question_from_fields(item, f"q{number}", f"{path}, line {number}"))
    return questions


def _csv_questions(path: Path, text: str) -> list[Question]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "question" not in [name.strip() for name in reader.fieldnames]:
        raise InputError(f"{path}: a CSV batch file needs a header row with a \"question\" column")
    reader.fieldnames = [name.strip() for name in reader.fieldnames]
    return [
        _question_from_fields(row, f"q{number}", f"{path}, row {number}")
        for number, row in enumerate(reader, 1)
        if any((value or "").strip() for key, value in row.items() if key is not None)
    ]


def _question_from_fields(fields: dict, default_id: str, where: str) -> Question:
    question = fields.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where}: no \"question\" text")
    identifier = fields.get("id")
    identifier = default_id if identifier is None or str(identifier).strip() == "" else str(identifier).strip()
    doc = fields.get("doc")
    if doc is not None and not isinstance(doc, str):
        raise InputError(f"{where}: \"doc\" must be a file name pattern (text)")
    return Question(identifier, question.strip(), (doc or "").strip() or None)


def _check_unique(path: Path, questions: Sequence[Question]) -> None:
    seen: set[str] = set()
    for question in questions:
        if question.id in seen:
            raise InputError(f"{path}: id '{question.id}' appears twice; ids must be unique to resume a batch")
        seen.add(question.id)


def as_questions(questions: Iterable[QuestionLike]) -> Iterator[Question]:
    """Questions from Question objects, plain strings (id q1, q2, ...) or dicts with question/id/doc."""
    for number, item in enumerate(questions, 1):
        if isinstance(item, Question):
            yield item
        elif isinstance(item, str):
            yield Question(f"q{number}", item.strip())
        elif isinstance(item, dict):
            yield _question_from_fields(item, f"q{number}", f"question {number}")
        else:
            raise TypeError(f"question {number}: expected a Question, str or dict, got {type(item).__name__}")


# ---------------------------------------------------------------- answering


def iter_batch(
    qa,
    questions: Iterable[QuestionLike],
    *,
    k: Optional[int] = None,
    doc: Optional[str] = None,
) -> Iterator[dict]:
    """Ask each question with one loaded ``DocQA``; yield one record per question, in order.

    A record is ``Answer.to_dict()`` plus ``id``, ``doc`` (the pattern used; a question's own ``doc``
    wins over ``doc``) and ``error`` (None). A question that fails yields a record with ``error`` set
    and ``answer`` None, and the batch goes on. Works the same with ``DocQA(retrieval_only=True)``.
    """
    for question in as_questions(questions):
        yield answer_record(qa, question, k=k, doc=question.doc or doc)


def answer_record(qa, question: Question, *, k: Optional[int] = None, doc: Optional[str] = None) -> dict:
    try:
        answer = qa.ask(question.question, doc=doc, k=k)
    except Exception as error:  # noqa: BLE001 - one failing question is recorded, the batch goes on
        log.debug("question %s failed", question.id, exc_info=True)
        return {
            "id": question.id, "question": question.question, "answer": None, "sources": [],
            "timings": None, "notes": [], "doc": doc, "error": _describe(error),
        }
    return {"id": question.id, **answer.to_dict(), "doc": doc, "error": None}


def _describe(error: BaseException) -> str:
    message = str(error).strip() or "no message"
    from docqa.errors import DocqaError

    return message if isinstance(error, DocqaError) else f"{type(error).__name__}: {message}"


# ---------------------------------------------------------------- output with resume


class BatchOutput:
    """An output file opened for appending records, after reading what an earlier run left there.

    ``done`` holds the ids already answered (records without an error). Records with an error, and a
    last record cut short by a killed run, are dropped by rewriting the file atomically, so that every
    id appears at most once once the rerun is through.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix == ".csv":
            self.format = "csv"
        elif suffix in JSONL_SUFFIXES:
            self.format = "jsonl"
        else:
            raise InputError(f"--out {self.path}: use a .jsonl or .csv file name (the extension picks the format)")
        self.done: set[str] = set()
        self._dropped = 0
        self._handle: Optional[TextIO] = None
        self._csv = None

    def open(self) -> "BatchOutput":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = self._resume() if self.path.exists() else None
        self._handle = open(self.path, "a", encoding="utf-8", newline="")
        if self.format == "csv":
            self._csv = csv.writer(self._handle, lineterminator="\n")
            if kept is None:
                self._csv.writerow(CSV_COLUMNS)
                self._handle.flush()
        return self

    def _resume(self) -> list[str]:
        text = self.path.read_text(encoding="utf-8")
        entries = self._csv_entries(text) if self.format == "csv" else self._jsonl_entries(text)
        kept = [raw for identifier, ok, raw in entries if ok]
        self.done = {identifier for identifier, ok, _ in entries if ok}
        if len(kept) != len(entries) or (text and not text.endswith("\n")) or self._dropped:
            self._rewrite(kept)
        return kept

    def _jsonl_entries(self, text: str) -> list[tuple[str, bool, str]]:
        entries = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                identifier = str(record["id"])
            except (json.JSONDecodeError, KeyError, TypeError):
                self._dropped += 1  # a line cut short by a killed run
                continue
            entries.append((identifier, not record.get("error"), line + "\n"))
        return entries

    def _csv_entries(self, text: str) -> list[tuple[str, bool, str]]:
        rows = list(csv.reader(io.StringIO(text, newline="")))
        if not rows:
            return []
        if rows[0] != CSV_COLUMNS:
            raise InputError(f"{self.path} exists with other columns than a docqa batch writes; choose another --out")
        entries = []
        for row in rows[1:]:
            if len(row) != len(CSV_COLUMNS) or not row[0]:
                self._dropped += 1  # a row cut short by a killed run
                continue
            line = io.StringIO()
            csv.writer(line, lineterminator="\n").writerow(row)
            entries.append((row[0], row[-1] == "", line.getvalue()))
        return entries

    def _rewrite(self, kept: list[str]) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            if self.format == "csv":
                csv.writer(handle, lineterminator="\n").writerow(CSV_COLUMNS)
            handle.writelines(kept)
        os.replace(temporary, self.path)

    def write(self, record: dict) -> None:
        if self._handle is None:
            raise RuntimeError("BatchOutput.write before open()")
        if self.format == "csv":
            self._csv.writerow(csv_row(record))
        else:
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        if not record.get("error"):
            self.done.add(record["id"])

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "BatchOutput":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def csv_row(record: dict) -> list:
    sources = record.get("sources") or []
    timings = record.get("timings") or {}
    top = sources[0] if sources else {}
    return [
        record["id"],
        record.get("question") or "",
        record.get("doc") or "",
        record.get("answer") or "",
        top.get("document", ""),
        top.get("page_number", ""),
        _collapse(top.get("text", "")),
        "; ".join(f"{source['document']} p.{source['page_number']}" for source in sources),
        " | ".join(record.get("notes") or []),
        _seconds(timings.get("retrieval")),
        _seconds(timings.get("generation")),
        timings.get("tokens", "") if timings.get("generation") is not None else "",
        _seconds(timings.get("total")),
        record.get("error") or "",
    ]


def _seconds(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.3f}"


@dataclass
class BatchSummary:
    total: int = 0
    skipped: int = 0
    answered: int = 0
    failed: int = 0
    seconds: float = 0.0

    def text(self, out: Path) -> str:
        rate = f", {self.answered * 60 / self.seconds:.1f} questions/min" if self.seconds and self.answered else ""
        return (f"{self.answered} answered, {self.failed} failed, {self.skipped} already in {out} "
                f"({self.total} questions) in {self.seconds:.1f} s{rate}")


def run_batch(
    qa,
    questions: Sequence[Question],
    out: Path | str,
    *,
    k: Optional[int] = None,
    doc: Optional[str] = None,
    progress: bool = False,
    on_record: Optional[Callable[[dict], None]] = None,
) -> BatchSummary:
    """Answer the questions not yet answered in ``out``, appending and flushing one record at a time."""
    started = time.perf_counter()
    summary = BatchSummary(total=len(questions))
    with BatchOutput(out) as output:
        todo = [question for question in questions if question.id not in output.done]
        summary.skipped = len(questions) - len(todo)
        with Progress(len(todo), enabled=progress) as bar:
            for record in iter_batch(qa, todo, k=k, doc=doc):
                output.write(record)
                if record["error"]:
                    summary.failed += 1
                else:
                    summary.answered += 1
                if on_record:
                    on_record(record)
                bar.advance()
    summary.seconds = time.perf_counter() - started
    return summary


class Progress:
    """A tqdm bar on stderr: questions done, questions per minute and the time left."""

    def __init__(self, total: int, *, enabled: bool = True, unit: str = "q"):
        self._bar = None
        self._started = time.perf_counter()
        self._done = 0
        if enabled and total:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
            )

    def advance(self) -> None:
        self._done += 1
        if self._bar is not None:
            minutes = (time.perf_counter() - self._started) / 60
            self._bar.set_postfix_str(f"{self._done / minutes:.1f} questions/min" if minutes else "", refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- one row per document


def each_doc_documents(qa, pattern: Optional[str] = None) -> list[str]:
    """Names of the indexed documents, or of those matching ``pattern`` (InputError names what exists)."""
    from docqa.retrieval import matching_documents

    records = qa.store.documents()
    if pattern:
        wanted = set(matching_documents(qa.store, pattern))
        records = [record for record in records if record.id in wanted]
    return [record.name for record in records]


def iter_each_doc(
    qa,
    questions: Sequence[Question],
    documents: Sequence[str],
    *,
    k: Optional[int] = None,
    on_cell: Optional[Callable[[], None]] = None,
) -> Iterator[dict]:
    """For each document, ask every question with retrieval restricted to it; yield one row per document.

    A row is ``{"document": name, "cells": [{"answer", "page", "error"}, ...]}``, one cell per question,
    where ``page`` is the 1-based page number of the top source (None when nothing was found).
    """
    for document in documents:
        cells = []
        for question in questions:
            record = answer_record(qa, question, k=k, doc=document)
            cells.append(_cell(record))
            if on_cell:
                on_cell()
        yield {"document": document, "cells": cells}


def _cell(record: dict) -> dict:
    if record["error"]:
        return {"answer": None, "page": None, "error": record["error"]}
    sources = record["sources"]
    page = sources[0]["page_number"] if sources else None
    answer = record["answer"]
    if answer is None and sources:  # retrieval only: show the top passage
        answer = _shorten(sources[0]["text"])
    return {"answer": answer, "page": page, "error": None}


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _shorten(text: str, limit: int = PASSAGE_CHARS) -> str:
    text = _collapse(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def each_doc_header(questions: Sequence[Question]) -> list[str]:
    header = ["document"]
    for question in questions:
        header += [f"{question.id}: {question.question}", f"{question.id} page"]
    return header


def each_doc_cells(row: dict) -> list[str]:
    values = [row["document"]]
    for cell in row["cells"]:
        answer = f"error: {cell['error']}" if cell["error"] else (cell["answer"] or "")
        values += [answer, "" if cell["page"] is None else str(cell["page"])]
    return values


class TableWriter:
    """Writes the --each-doc table row by row (flushed), as CSV or as a Markdown table."""

    def __init__(self, handle: TextIO, fmt: str):
        if fmt not in ("csv", "md"):
            raise ValueError(f"unknown table format {fmt!r}")
        self.handle = handle
        self.format = fmt
        self._csv = csv.writer(handle, lineterminator="\n") if fmt == "csv" else None

    @staticmethod
    def format_for(path: Optional[Path]) -> str:
        if path is None or path.suffix.lower() == ".md":
            return "md"
        if path.suffix.lower() == ".csv":
            return "csv"
        raise InputError(f"--out {path}: --each-doc writes a .csv or .md table")

    def row(self, values: Sequence[str], *, header: bool = False) -> None:
        if self._csv is not None:
            self._csv.writerow(values)
        else:
            self.handle.write("| " + " | ".join(_markdown_cell(value) for value in values) + " |\n")
            if header:
                self.handle.write("|" + "|".join(" --- " for _ in values) + "|\n")
        self.handle.flush()


def _markdown_cell(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip().replace("|", "\\|")


def run_each_doc(
    qa,
    questions: Sequence[Question],
    handle: TextIO,
    fmt: str,
    *,
    doc: Optional[str] = None,
    k: Optional[int] = None,
    progress: bool = False,
) -> int:
    """Write the per-document table; returns the number of cells that failed."""
    documents = each_doc_documents(qa, doc)
    if any(question.doc for question in questions):
        log.warning("--each-doc asks every question of every document; the \"doc\" of a question is ignored")
    writer = TableWriter(handle, fmt)
    writer.row(each_doc_header(questions), header=True)
    failed = 0
    with Progress(len(documents) * len(questions), enabled=progress) as bar:
        for row in iter_each_doc(qa, questions, documents, k=k, on_cell=bar.advance):
            failed += sum(1 for cell in row["cells"] if cell["error"])
            writer.row(each_doc_cells(row))
    return failed
