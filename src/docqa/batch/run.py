"""Answering many questions with one loaded model, and resumable runs that append to an output file.

Every record is flushed when written; a rerun with the same output skips the ids already answered and retries
those recorded with an error, and a run that answers also asks again those a retrieval-only run left without an
answer.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, TextIO

from docqa.batch.questions import Question, QuestionLike, as_questions
from docqa.batch.writers import (Entry, check_writable, new_file_beside, open_for_writing, pattern_list, patterns,
                                 record_format, same_scope)
from docqa.errors import ClosedError, DocqaError, InputError, OutputLockedError
from docqa.locks import locked_or_refused
from docqa.progress import Progress
from docqa.qa import check_scope

log = logging.getLogger(__name__)


def iter_batch(
    qa,
    questions: Iterable[QuestionLike],
    *,
    k: Optional[int] = None,
    doc: Optional[str | Sequence[str]] = None,
) -> Iterator[dict]:
    """Ask each question with one loaded ``DocQA``; yield one record per question, in order.

    A record is ``Answer.to_dict()`` plus ``id``, ``doc`` (the pattern used; a question's own ``doc``
    wins over ``doc``) and ``error`` (None). A question that fails yields a record with ``error`` set
    and ``answer`` None, and the batch goes on; what no question could get past (a ``k`` or ``doc`` no search
    takes, a closed DocQA) is raised instead. Works the same with ``DocQA(retrieval_only=True)``.
    """
    check_scope(k, None)
    doc = qa.checked_doc(doc)  # a Path as its name; a pattern matching nothing is refused once, not per question
    for question in as_questions(questions):
        yield answer_record(qa, question, k=k, doc=question.doc or doc)


def answer_record(qa, question: Question, *, k: Optional[int] = None,
                  doc: Optional[str | Sequence[str]] = None) -> dict:
    try:
        answer = qa.ask(question.question, doc=doc, k=k)
    except ClosedError:  # no later question could be answered either
        raise
    except Exception as error:  # noqa: BLE001 - one failing question is recorded, the batch goes on
        log.debug("question %s failed", question.id, exc_info=True)
        return {  # the keys an answered record has, so that a script reads every record alike
            "id": question.id, "question": question.question, "answer": None, "sources": [], "timings": None,
            "notes": [], "searched": None, "cut_off": None, "model": None, "answered": None, "doc": doc,
            "error": _describe(error),
        }
    return {"id": question.id, **answer.to_dict(), "doc": doc, "error": None}


def _describe(error: BaseException) -> str:
    message = str(error).strip() or "no message"
    return message if isinstance(error, DocqaError) else f"{type(error).__name__}: {message}"


class BatchOutput:
    """An output file opened for appending records, after reading what an earlier run left there.

    ``done`` holds the ids already answered (records without an error; when ``answers``, also with an answer, so
    that the passages a retrieval-only run wrote for ``questions`` are asked again). The records of ``questions``
    to be asked again, and a last record cut short by a killed run, are dropped by rewriting the file atomically
    (with its permissions), so that every id appears at most once once the rerun is through; the records of
    other ids stay, failed ones too. A file that holds anything else, or another question under an id of
    ``questions`` that it answered (a failed one is asked anew), is refused as it is: resuming into it would lose the user's lines or mix two question files'
    answers, or an answer of ``questions`` by another model than ``model`` (the demo model's answers kept as done
    once the real model answers would pass for its own). The extension picks the format (``writers``).
    """

    def __init__(self, path: Path | str, *, answers: bool = True, questions: Sequence[Question] = (),
                 doc: Optional[str | Sequence[str]] = None, model: Optional[str] = None):
        self.path = Path(path)
        self.format = record_format(self.path)
        self.answers = answers
        self.model = model  # the model this run answers with (LLM.model_name), where known
        self.questions = questions
        self.doc = doc  # the batch's own scope, for questions without one
        self.done: set[str] = set()
        self._handle: Optional[TextIO] = None
        self._passages: set[str] = set()  # ids whose passages-only record this run answers
        self._replaced: set[str] = set()  # those of them answered by now: their passages go when the file closes

    def open(self) -> "BatchOutput":
        _refuse_read_only(self.path)
        self._handle = self._locked()
        try:
            if not self._resume():
                self._handle.write(self.format.header())
                self._handle.flush()
        except BaseException:
            self.close()
            raise
        return self

    def check(self) -> None:
        """What ``open`` would refuse, refused now (a run under way, another program's data, another question under
        an id, a path that cannot be written), changing nothing: ``open`` drops the records a run asks again,
        and a run that then failed (no model, no index) lost them."""
        if not self.path.exists():
            check_writable(self.path)
            return
        _refuse_read_only(self.path)
        self._locked().close()
        text = self._text()
        if text:
            entries, _dropped = self.format.entries(text, self.path)
            self._check_same_questions([entry for entry in entries if entry.ok])

    def _text(self) -> str:
        # newline="": a question's own line breaks (a CSV cell may hold "\r\n") are read back as written;
        # utf-8-sig: a byte-order mark, which Excel's "CSV UTF-8" and some editors write first, is no column name
        try:
            with open(self.path, encoding="utf-8-sig", newline="") as handle:
                return handle.read()
        except UnicodeDecodeError:  # a docqa results file is UTF-8: this is another program's data
            raise InputError(f"{self.path} is not a docqa results file (it is not UTF-8 text); write to another "
                             "--out") from None

    def _locked(self) -> TextIO:
        """The file opened for appending, locked against a second run writing it at the same time (each would
        append every answer: two records per id); its lock is released when it is closed."""
        for _attempt in range(5):
            handle = locked_or_refused(open_for_writing(self.path, "a"), f"another batch is writing {self.path}; "
                                       "wait for it to finish, or write to another --out")
            try:
                if os.fstat(handle.fileno()).st_ino == os.stat(self.path).st_ino:
                    return handle
            except FileNotFoundError:
                pass
            handle.close()  # locked a file that a run resuming into it replaced meanwhile: lock the new one
        raise OutputLockedError(f"{self.path} keeps being replaced by another run; write to another --out")

    def _resume(self) -> bool:
        """Keep the answered records of an earlier run; False when the file held nothing at all."""
        text = self._text()
        if not text:
            return False
        entries, dropped = self.format.entries(text, self.path)
        self._check_same_questions([entry for entry in entries if entry.ok])  # a failed one is asked again
        asked_now = {question.id for question in self.questions}
        # Dropped: the failed records of the ids this run asks again, and passages an answer to the same id
        # replaced (an answering run killed before it could drop them); the records of ids it does not ask, failed
        # or not, are another questions file's and stay. Passages of ids this run answers stay until their answer
        # comes: a run stopped before then dropped what a retrieval-only run had found.
        kept = _without_superseded([entry for entry in entries if entry.id not in asked_now or entry.ok])
        self.done = {entry.id for entry in kept if entry.ok and (entry.answered or not self.answers)}
        if self.answers:
            self._passages = {entry.id for entry in kept if entry.ok and not entry.answered and entry.id in asked_now}
        if len(kept) != len(entries) or not text.endswith("\n") or dropped:
            self._rewrite(kept)
        return True

    def _check_same_questions(self, entries: list[Entry]) -> None:
        asked = {entry.id: entry for entry in entries}
        for question in self.questions:
            entry = asked.get(question.id)
            if entry is None:
                continue
            if entry.question != question.question:
                raise InputError(
                    f"{self.path} holds another question under id {question.id!r} ({entry.question!r}); "
                    f"write to another --out, or give the questions ids of their own")
            scope = patterns(question.doc or self.doc)
            if entry.doc is not None and not same_scope(entry.doc, scope):
                # A rerun with a corrected --doc got the old scope's answers back, as already done.
                raise InputError(
                    f"{self.path} holds the answer to {question.id!r} from {_searched(entry.doc)}, and this run "
                    f"searches {_searched(scope)}; write to another --out, or delete the file to ask again")
            if self.answers and self.model and entry.answered and entry.model and entry.model != self.model:
                raise InputError(
                    f"{self.path} holds the answer to {question.id!r} by the model {entry.model}, and this run "
                    f"answers with {self.model}; write to another --out, or delete the file to ask again")

    def _rewrite(self, kept: list[Entry]) -> None:
        """The file with ``kept`` alone, replaced whole; its new copy, locked before it takes the name, becomes the
        file appended to."""
        target = Path(os.path.realpath(self.path))  # through a link, the file it names (the link stays a link)
        temporary = new_file_beside(target)  # with the results file's permissions, under a name nobody else uses
        if temporary is None:
            raise InputError(f"cannot resume into {self.path}: its folder takes no new file, and the file is "
                             "rewritten beside itself; write to another --out")
        handle = open_for_writing(temporary, "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(self.format.header())
            handle.writelines(entry.text for entry in kept)
            handle.flush()
            os.replace(temporary, target)
        except BaseException:
            handle.close()
            temporary.unlink(missing_ok=True)
            raise
        self._handle.close()
        self._handle = handle

    def write(self, record: dict) -> None:
        if self._handle is None:
            raise RuntimeError("BatchOutput.write before open()")
        self._handle.write(self.format.line(record))
        self._handle.flush()
        if not record.get("error"):
            self.done.add(record["id"])
            if record["id"] in self._passages and record.get("answer") is not None:
                self._replaced.add(record["id"])

    def close(self) -> None:
        if self._handle is None:
            return
        if self._replaced:  # each id once, the answer in place of the passages (stopped part way too)
            try:
                entries, _dropped = self.format.entries(self._text(), self.path)
                self._rewrite(_without_superseded(entries))
            except (OSError, InputError):  # the file holds both still: the next run drops the passages
                log.debug("passages answered in %s not dropped", self.path, exc_info=True)
            self._replaced.clear()
        self._handle.close()
        self._handle = None

    def __enter__(self) -> "BatchOutput":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def _without_superseded(entries: list[Entry]) -> list[Entry]:
    """``entries`` less the passages-only records of ids the file also holds an answer to."""
    answered = {entry.id for entry in entries if entry.ok and entry.answered}
    return [entry for entry in entries if entry.answered or not entry.ok or entry.id not in answered]


def _searched(scope: str) -> str:
    listed = pattern_list(scope)
    shown = ", ".join(listed) if isinstance(listed, list) else scope
    return f"the documents matching {shown!r}" if scope else "every document"


def _refuse_read_only(path: Path) -> None:
    """An InputError for a results file that is read-only to its owner's intent: no write bit (root may write
    anyway, but must not replace it) or no access; one on a read-only file system is said as such, since making
    the file writable cannot help there."""
    if not path.is_file() or (path.stat().st_mode & 0o222 and os.access(path, os.W_OK)):
        return
    if os.statvfs(path).f_flag & os.ST_RDONLY:
        raise InputError(f"{path} is on a read-only file system: write the results to another file on a disk "
                         f"that takes writes")
    raise InputError(f"{path} is read-only: make it writable to resume into it, or write to another file")


@dataclass
class BatchSummary:
    total: int = 0
    skipped: int = 0
    answered: int = 0
    failed: int = 0
    seconds: float = 0.0
    passages_only: bool = False  # a run without a model: "answered" is the passages found

    def text(self, out: Path) -> str:
        rate = f", {self.answered * 60 / self.seconds:.1f} questions/min" if self.seconds and self.answered else ""
        done = "retrieved (no model: passages only)" if self.passages_only else "answered"
        return (f"{self.answered} {done}, {self.failed} failed, {self.skipped} already in {out} "
                f"({self.total} questions) in {self.seconds:.1f} s{rate}")


def run_batch(
    qa,
    questions: Sequence[QuestionLike],
    out: Path | str,
    *,
    k: Optional[int] = None,
    doc: Optional[str | Sequence[str]] = None,
    progress: bool = False,
    on_record: Optional[Callable[[dict], None]] = None,
) -> BatchSummary:
    """Answer the questions not yet answered in ``out``, appending and flushing one record at a time."""
    started = time.perf_counter()
    questions = list(as_questions(questions))  # texts too, as iter_batch takes them
    doc = qa.checked_doc(doc)  # before the results file is written
    summary = BatchSummary(total=len(questions))
    # A DocQA without a model (retrieval-only) answers nothing, so records without an answer count as done.
    answers = qa.llm is not None
    summary.passages_only = not answers
    with BatchOutput(out, answers=answers, questions=questions, doc=doc,
                     model=qa.llm.model_name if answers else None) as output:
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
