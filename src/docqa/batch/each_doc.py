"""The per-document table: every question asked of every document, one row per document."""

from __future__ import annotations

from typing import Callable, Iterator, Optional, Sequence, TextIO

from docqa.batch.questions import Question, QuestionLike, as_questions
from docqa.batch.run import answer_record
from docqa.batch.writers import collapse, table_writer
from docqa.errors import InputError
from docqa.progress import Progress

PASSAGE_CHARS = 300  # the top passage shown in a cell when there is no LLM answer


def each_doc_documents(qa, pattern: Optional[str | Sequence[str]] = None) -> list[str]:
    """Names of the indexed documents, or of those matching ``pattern`` or any of several (InputError names what
    exists)."""
    from docqa.retrieval import matching_documents

    records = qa.store.documents()
    pattern = qa.checked_doc(pattern)
    if pattern:
        patterns = [pattern] if isinstance(pattern, str) else pattern
        wanted = {document_id for each in patterns for document_id in matching_documents(qa.store, each)}
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


def _shorten(text: str, limit: int = PASSAGE_CHARS) -> str:
    text = collapse(text)
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


def run_each_doc(
    qa,
    questions: Sequence[QuestionLike],
    handle: TextIO,
    fmt: str,
    *,
    doc: Optional[str | Sequence[str]] = None,
    k: Optional[int] = None,
    progress: bool = False,
) -> int:
    """Write the per-document table in format ``fmt`` (``csv`` or ``md``); returns the number of cells that failed."""
    questions = list(as_questions(questions))  # texts too, as iter_batch takes them
    if scoped := [question.id for question in questions if question.doc]:
        # A warning in the log was all a Python caller got, and the table did not answer what the question asked
        raise InputError(f"each-doc asks each document in turn, so the \"doc\" of question {scoped[0]} would not "
                         "be used; choose the documents with doc=, or ask it with run_batch")
    documents = each_doc_documents(qa, doc)
    writer = table_writer(handle, fmt)
    writer.row(each_doc_header(questions), header=True)
    failed = 0
    # One answer per question and document: a count of questions would end at len(questions) × the documents
    with Progress(len(documents) * len(questions), enabled=progress, unit="answer", noun="answers") as bar:
        for row in iter_each_doc(qa, questions, documents, k=k, on_cell=bar.advance):
            failed += sum(1 for cell in row["cells"] if cell["error"])
            writer.row(each_doc_cells(row))
    return failed
