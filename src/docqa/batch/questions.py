"""Batch questions from a file, the reader chosen by its extension.

- ``.jsonl`` / ``.ndjson``: one JSON object per line with ``question`` and optional ``id`` and ``doc``
  (a glob over document file names, overriding ``--doc`` for that line); ``.json``: the same, or a JSON array of
  such objects or of question texts;
- ``.csv`` (``.tsv``, tab-separated; semicolons, as Excel writes them where the comma is the decimal mark): a
  header row with a ``question`` column (any case), optional ``id`` and ``doc`` columns;
- anything else: plain text, one question per line (blank lines and lines starting with ``#`` skipped).

A question without an id gets ``q<N>``: N is its line number in a text or JSONL file (1 = first line), its row
number in a CSV file (1 = first row after the header) and its place in a JSON array (1 = first). The id is the
resume key, so ids must be unique; editing the lines above a question changes its generated id.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

from docqa.errors import InputError


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    doc: Optional[str | tuple[str, ...]] = None  # a file-name pattern, or several (any of them)


QuestionLike = Union[Question, str, dict]


def read_questions(path: Path | str) -> list[Question]:
    """The questions of a text, JSONL or CSV file (see the module docstring); raises InputError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"batch file not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder; the batch file is a file of questions (.txt, .jsonl or .csv)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    reader = READERS.get(path.suffix.lower().lstrip("."), _text_questions)
    questions = reader(path, text)
    if not questions:
        raise InputError(f"{path}: no questions found")
    _check_unique(path, questions)
    return questions


def _text_questions(path: Path, text: str) -> list[Question]:
    # Line ends only: str.splitlines() also broke a line at a form feed, NEL or U+2028, cutting a question in
    # two and numbering the ones after it off their lines.
    return [
        _checked_id(Question(f"q{number}", line.strip()), f"{path}, line {number}")
        for number, line in enumerate(_LINE_END.split(text), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


_LINE_END = re.compile(r"\r\n|\r|\n")


def _jsonl_questions(path: Path, text: str) -> list[Question]:
    questions = []
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines(): a question may hold U+2028
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


def _json_questions(path: Path, text: str) -> list[Question]:
    """A .json file: a JSON array of questions (objects as in JSONL, or plain strings), or JSON Lines."""
    if not text.lstrip().startswith("["):
        return _jsonl_questions(path, text)
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from None
    questions = []
    for number, item in enumerate(items, 1):
        where = f"{path}, item {number}"
        if isinstance(item, str):
            item = {"question": item}
        elif not isinstance(item, dict):
            raise InputError(f"{where}: expected a question (text) or a JSON object with a \"question\"")
        questions.append(_question_from_fields(item, f"q{number}", where))
    return questions


def _csv_questions(path: Path, text: str, delimiter: str = ",") -> list[Question]:
    from docqa.batch.writers import long_csv_fields, pattern_list

    kind = "CSV" if delimiter == "," else "TSV"
    with long_csv_fields():
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        # "Question" as a spreadsheet heads its column counts too
        names = [name.strip().lower() for name in reader.fieldnames or []]
        if "question" not in names and delimiter == "," and "question" in _header_cells(text, ";"):
            # Excel's CSV where a comma is the decimal mark (much of Europe): separated by semicolons
            return _csv_questions(path, text, ";")
        if "question" not in names:
            raise InputError(f"{path}: a {kind} batch file needs a header row with a \"question\" column")
        reader.fieldnames = names
        questions = []
        for number, row in enumerate(reader, 1):
            where = f"{path}, row {number}"
            if any((value or "").strip() for value in row.get(None) or []):
                # An unquoted question with a comma in it was cut there, the rest dropped unsaid
                raise InputError(f"{where}: more cells than the header has columns; put a question that holds "
                                 f"a {'comma' if delimiter == ',' else 'separator'} in double quotes")
            if any((value or "").strip() for key, value in row.items() if key is not None):
                if row.get("doc"):  # several patterns, as a results CSV writes them: a JSON list
                    row["doc"] = pattern_list(row["doc"].strip())
                questions.append(_question_from_fields(row, f"q{number}", where))
        return questions


def _header_cells(text: str, delimiter: str) -> list[str]:
    return [cell.strip().lower() for cell in next(csv.reader(io.StringIO(text), delimiter=delimiter), [])]


# Extension (without the dot) to reader; any other extension is read as plain text.
READERS: dict[str, Callable[[Path, str], list[Question]]] = {
    "jsonl": _jsonl_questions,
    "ndjson": _jsonl_questions,
    "json": _json_questions,
    "csv": _csv_questions,
    "tsv": lambda path, text: _csv_questions(path, text, "\t"),
}


def _question_from_fields(fields: dict, default_id: str, where: str) -> Question:
    question = fields.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where}: no \"question\" text")
    identifier = fields.get("id")
    if isinstance(identifier, (bool, dict, list)):  # true became the id "True", {} the id "{}"
        raise InputError(f"{where}: \"id\" must be text or a number, not {json.dumps(identifier)}")
    identifier = default_id if identifier is None or str(identifier).strip() == "" else str(identifier).strip()
    doc = fields.get("doc")
    if isinstance(doc, list):  # several patterns, as a results record writes them: it can be read back in
        if not doc or not all(isinstance(pattern, str) and pattern.strip() for pattern in doc):
            raise InputError(f"{where}: \"doc\" must be a file name pattern (text) or a list of them")
        doc = tuple(pattern.strip() for pattern in doc) if len(doc) > 1 else doc[0]
    elif doc is not None and not isinstance(doc, str):
        raise InputError(f"{where}: \"doc\" must be a file name pattern (text) or a list of them")
    if isinstance(doc, str):
        doc = doc.strip() or None
    return _checked_id(Question(identifier, question.strip(), doc), where)


def _checked_id(question: Question, where: str) -> Question:
    """The id is the resume key, read back from the results file: one that is not valid Unicode (a JSON
    "\\ud800") is written as its escape and never matches again, so the question would be asked on every run."""
    if any(0xD800 <= ord(character) <= 0xDFFF for character in question.id):
        raise InputError(f"{where}: the id {question.id!r} is not valid Unicode text; give it another id")
    return question


def _check_unique(path: Path, questions: Sequence[Question]) -> None:
    seen: set[str] = set()
    for question in questions:
        if question.id in seen:
            # q<number> is also the id a question without one gets: the user may have written it once only
            numbered = (" (a question without an id is numbered by its line or row, as q<number>: give it an id of "
                        "its own)") if re.fullmatch(r"q\d+", question.id) else ""
            raise InputError(f"{path}: id '{question.id}' appears twice; ids must be unique to resume a batch"
                             f"{numbered}")
        seen.add(question.id)


def as_questions(questions: Union[Iterable[QuestionLike], str]) -> Iterator[Question]:
    """Questions from Question objects, plain strings (id q1, q2, ...) or dicts with question/id/doc; one string
    is one question (not one per character). An id met twice is an InputError there: ids are the resume key."""
    seen: set[str] = set()
    for number, item in enumerate([questions] if isinstance(questions, str) else questions, 1):
        if isinstance(item, Question):
            question = item
        elif isinstance(item, str):
            question = Question(f"q{number}", item.strip())
        elif isinstance(item, dict):
            question = _question_from_fields(item, f"q{number}", f"question {number}")
        else:
            raise InputError(f"question {number}: expected a Question, str or dict, not {type(item).__name__}")
        if question.id in seen:
            raise InputError(f"question {number}: id '{question.id}' appears twice; ids must be unique")
        seen.add(question.id)
        yield question
