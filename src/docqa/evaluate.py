"""Retrieval quality against a gold file: recall@k, mean reciprocal rank, prompt context size, latency.

The gold format and the hit rule are those of ``../shared/eval/README.md``, copied into
``docs/evaluation.md``. Only the index and the embedding model are used, never the LLM::

    from docqa import DocQA
    from docqa.evaluate import evaluate
    with DocQA.from_config(retrieval_only=True) as qa:
        print(evaluate(qa, "../shared/eval/financebench_dev.jsonl", ks=[1, 2, 4, 8, 16]))
"""

from __future__ import annotations

import glob
import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, TextIO

import numpy as np

from docqa.documents import composed
from docqa.errors import InputError
from docqa.text import fold_text

log = logging.getLogger(__name__)

DEFAULT_KS = (1, 2, 4, 8, 16)
CHARS_PER_TOKEN = 4  # the estimate used when the LLM's tokenizer cannot be had without loading the model
PASSAGE_SEPARATOR = "\n\n"  # how the prompt joins passages (docqa.prompts.build_prompt)


@dataclass(frozen=True)
class GoldQuestion:
    id: str
    doc: str
    question: str
    pages: frozenset[int]
    answers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Retrieved:
    document: str
    page_index: int
    text: str


# ---------------------------------------------------------------- gold file and hit rule


def read_gold(path: Path | str) -> list[GoldQuestion]:
    """The questions of a gold JSONL file; raises InputError naming the line of any problem."""
    path = Path(path)
    try:
        # "\n" alone ends a line: str.splitlines() also breaks at U+2028, NEL or a form feed, which JSON strings
        # may hold as they are (json.dumps(..., ensure_ascii=False) writes them so)
        lines = path.read_text(encoding="utf-8-sig").split("\n")
    except FileNotFoundError:
        raise InputError(f"gold file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    questions, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            # a JSON array or a CSV, as batch takes questions: a gold file is one object per line
            raise InputError(f"{where}: not valid JSON ({exc.msg}); a gold file is JSON Lines, one JSON object per "
                             "line") from None
        if isinstance(item, list):
            raise InputError(f"{where}: a JSON array; a gold file is JSON Lines, one JSON object per line")
        question = _gold_question(item, where)
        if question.id in seen:
            raise InputError(f"{where}: id '{question.id}' appears twice")
        seen.add(question.id)
        questions.append(question)
    if not questions:
        raise InputError(f"{path}: no questions found")
    return questions


def _gold_question(item, where: str) -> GoldQuestion:
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected a JSON object")
    for key in ("id", "doc", "question", "pages"):
        if key not in item:
            raise InputError(f"{where}: missing \"{key}\"")
    if not isinstance(item["id"], (str, int)) or isinstance(item["id"], bool) or not str(item["id"]).strip():
        raise InputError(f"{where}: \"id\" must be a text or a number, not {item['id']!r}")  # null became "None"
    pages = item["pages"]
    if not isinstance(pages, list) or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in pages):
        raise InputError(f"{where}: \"pages\" must be a list of 0-based page indices")
    if not pages:  # no passage could ever count as a hit
        raise InputError(f"{where}: \"pages\" is empty; name the 0-based page indices the evidence is on")
    answers = item.get("answers")
    answers = [] if answers is None else answers
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise InputError(f"{where}: \"answers\" must be a list of strings")
    if any(not answer.strip() for answer in answers):  # an empty spreadsheet cell: every passage holds ""
        raise InputError(f"{where}: an empty answer string would match every passage; remove it, or give the "
                         "text the page holds")
    if not isinstance(item["doc"], str) or not item["doc"].strip():
        raise InputError(f"{where}: \"doc\" must be a file name")
    if not isinstance(item["question"], str) or not item["question"].strip():
        raise InputError(f"{where}: \"question\" must be text")
    return GoldQuestion(str(item["id"]), item["doc"].strip(), item["question"].strip(), frozenset(pages), tuple(answers))


def file_name(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def document_key(name: str) -> str:
    """A document's file name as the hit rule compares it: accents composed (a Mac writes "é" as e and a combining
    accent) and case folded, as ``--doc`` finds documents; an indexed "Annual Report.PDF" scored 0 against a gold
    "Annual Report.pdf" while the per-document search found it."""
    return composed(file_name(name)).casefold()


def is_hit(gold: GoldQuestion, chunk: Retrieved) -> bool:
    """The hit rule: same file name, on a gold page, and (when answers are given) containing one of them."""
    if document_key(chunk.document) != document_key(gold.doc):
        return False
    if chunk.page_index not in gold.pages:
        return False
    if gold.answers:
        text = fold_text(chunk.text)
        return any(fold_text(answer) in text for answer in gold.answers)
    return True


# ---------------------------------------------------------------- what is evaluated


class _Target:
    """A DocQA (``retrieve``) or a Retriever (``search``), seen as: question, k, doc → Retrieved chunks."""

    def __init__(self, target):
        settings = getattr(target, "settings", None)
        retrieval = getattr(settings, "retrieval", settings)
        if callable(getattr(target, "retrieve", None)):
            self._search = lambda question, k, doc: [
                Retrieved(s.document, s.page_index, s.text) for s in target.retrieve(question, k=k, doc=doc)
            ]
        elif callable(getattr(target, "search", None)):
            self._search = lambda question, k, doc: [
                Retrieved(h.chunk.document, h.chunk.page_index, h.chunk.text) for h in target.search(question, k, doc).hits
            ]
        else:
            raise TypeError("evaluate() needs a DocQA or a Retriever")
        self.default_k = int(getattr(retrieval, "k", 2))
        self.mode = getattr(retrieval, "mode", None)
        self.store = getattr(target, "store", None)
        llm = getattr(target, "llm", None)
        self.count_tokens = getattr(llm, "count_tokens", None)

    def search(self, question: str, k: int, doc: Optional[str]) -> list[Retrieved]:
        return self._search(question, k, doc)

    def indexed_pages(self) -> Optional[dict[str, int]]:
        """Each indexed document's page count, by file name (the hit rule's: where two folders hold a file of that
        name, the larger count); None where the target has no index to ask."""
        if self.store is None:
            return None
        pages: dict[str, int] = {}
        for record in self.store.documents():
            pages[document_key(record.name)] = max(record.pages, pages.get(document_key(record.name), 0))
        return pages


def llm_token_counter(settings) -> Optional[Callable[[str], int]]:
    """The LLM's own token count, where its backend loads the tokenizer without the weights (``create_tokenizer``:
    llama-cpp on a GGUF file); else None, and the evaluation estimates. It must not load a 7B model to count."""
    from docqa.errors import DocqaError
    from docqa.llm import create_tokenizer

    try:
        tokenizer = create_tokenizer(settings.llm, settings.root)
    except DocqaError:  # llama-cpp-python missing, or the file will not load: estimate instead
        log.debug("no tokenizer from %s", settings.llm.model_path, exc_info=True)
        return None
    return tokenizer.count_tokens if tokenizer is not None else None


# ---------------------------------------------------------------- running


def iter_evaluation(
    target,
    questions: Sequence[GoldQuestion],
    ks: Sequence[int] = DEFAULT_KS,
    *,
    per_doc: bool = False,
    count_tokens: Optional[Callable[[str], int]] = None,
) -> Iterator[dict]:
    """One detail record per question: its hits and ranks, latency and prompt context size.

    Each question is retrieved once at depth max(ks) (or the default k, if larger) over the whole
    index; with ``per_doc`` once more with retrieval restricted to its gold document.
    One untimed warm-up retrieval comes first, so that lazy loading does not count as latency.
    """
    view = target if isinstance(target, _Target) else _Target(target)
    ks = _check_ks(ks)
    count_tokens = count_tokens or view.count_tokens
    depth = max(max(ks), view.default_k)
    if questions:
        view.search(questions[0].question, depth, None)
    for gold in questions:
        record = {"id": gold.id, "doc": gold.doc, "pages": sorted(gold.pages), "question": gold.question}
        record.update(_scored(view, gold, depth, None))
        context = PASSAGE_SEPARATOR.join(chunk["text"] for chunk in record.pop("_chunks")[: view.default_k])
        record["context_chars"] = len(context)
        record["context_tokens"] = count_tokens(context) if count_tokens else math.ceil(len(context) / CHARS_PER_TOKEN)
        if per_doc:  # by file name, as the hit rule matches documents (a gold "doc" may be a path)
            restricted = _scored(view, gold, depth, glob.escape(file_name(gold.doc)))
            restricted.pop("_chunks")
            record["per_doc"] = restricted
        yield record


def _scored(view: _Target, gold: GoldQuestion, depth: int, doc: Optional[str]) -> dict:
    started = time.perf_counter()
    try:
        chunks = view.search(gold.question, depth, doc)
        error = None
    except InputError as exc:  # per-doc: the gold document is not in the index
        chunks, error = [], str(exc)
    latency_ms = (time.perf_counter() - started) * 1000
    hits = [is_hit(gold, chunk) for chunk in chunks]
    ranks = [rank for rank, hit in enumerate(hits, 1) if hit]
    result = {
        "first_hit_rank": ranks[0] if ranks else None,
        "hit_ranks": ranks,
        "retrieved": [
            {"rank": rank, "document": chunk.document, "page_index": chunk.page_index, "hit": hit}
            for rank, (chunk, hit) in enumerate(zip(chunks, hits), 1)
        ],
        "latency_ms": round(latency_ms, 3),
        "_chunks": [{"text": chunk.text} for chunk in chunks],
    }
    if gold.answers and not ranks:
        # Gold pages written as a viewer numbers them (from 1): the answer string stands one page before each
        before = replace(gold, pages=frozenset(page - 1 for page in gold.pages))
        result["hit_on_page_before"] = any(is_hit(before, chunk) for chunk in chunks)
    if error:
        result["error"] = error
    return result


def summarize(records: Sequence[dict], ks: Sequence[int]) -> dict:
    """recall@k for each k, MRR (over the first max(ks) chunks) and latency p50/p95 of detail records."""
    ks = _check_ks(ks)
    n = len(records)
    cutoff = max(ks)
    firsts = [record["first_hit_rank"] for record in records]
    summary: dict = {"questions": n}
    for k in ks:
        summary[f"recall@{k}"] = _ratio(sum(1 for rank in firsts if rank is not None and rank <= k), n)
    reciprocal = [1.0 / rank if rank is not None and rank <= cutoff else 0.0 for rank in firsts]
    summary["mrr"] = round(sum(reciprocal) / n, 4) if n else None
    summary["mrr_cutoff"] = cutoff
    latencies = [record["latency_ms"] for record in records]
    summary["latency_ms_p50"] = _percentile(latencies, 50)
    summary["latency_ms_p95"] = _percentile(latencies, 95)
    errors = sum(1 for record in records if record.get("error"))
    if errors:
        summary["errors"] = errors
    return summary


def evaluate(
    qa_or_retriever,
    gold_path: Path | str,
    ks: Sequence[int] = DEFAULT_KS,
    per_doc: bool = False,
    *,
    details: Optional[Path | str | TextIO] = None,
    count_tokens: Optional[Callable[[str], int]] = None,
    progress: Optional[Callable[[], None]] = None,
    questions: Optional[Sequence[GoldQuestion]] = None,
) -> dict:
    """Score retrieval against a gold file; returns one JSON-ready dict (see docs/evaluation.md).

    ``details`` (a path or an open text file) receives one JSON line per question as it is scored.
    ``count_tokens`` counts the context in LLM tokens; without it (and without a loaded LLM on the
    DocQA) tokens are estimated as characters / 4 and ``context_tokens_estimated`` is true. ``questions``: the gold
    file's, already read (``read_gold``), where it cannot be read twice (a pipe).
    """
    view = _Target(qa_or_retriever)
    ks = _check_ks(ks)
    questions = list(questions) if questions is not None else read_gold(gold_path)
    check_gold_indexed(view, questions)
    counter = count_tokens or view.count_tokens
    records = []
    handle, owned = _details_handle(details)
    try:
        for record in iter_evaluation(view, questions, ks, per_doc=per_doc, count_tokens=counter):
            records.append(record)
            if handle is not None:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
            if progress:
                progress()
    finally:
        if owned:
            handle.close()
    return _result(view, gold_path, ks, per_doc, records, questions, estimated=counter is None)


def check_gold_indexed(qa_or_retriever, questions: Sequence[GoldQuestion]) -> None:
    """InputError where none of the gold questions' documents is indexed: a recall of 0.0 would pass for a
    measurement."""
    view = qa_or_retriever if isinstance(qa_or_retriever, _Target) else _Target(qa_or_retriever)
    indexed = view.indexed_pages()
    if indexed is None or any(document_key(question.doc) in indexed for question in questions):
        return
    missing = sorted({question.doc for question in questions})
    raise InputError(f"none of the gold file's documents is in the index ({', '.join(missing)}): nothing was "
                     "measured; build the index from them, or check the names in the gold file")


def _result(view: _Target, gold_path, ks, per_doc: bool, records: list[dict], questions, *, estimated: bool) -> dict:
    result: dict = {"gold": str(gold_path), "retrieval": "one index of all documents"}
    if view.mode:
        result["mode"] = view.mode
    result.update(summarize(records, ks))
    chars = [record["context_chars"] for record in records]
    tokens = [record["context_tokens"] for record in records]
    result.update({
        "default_k": view.default_k,
        "context_chars_mean": round(float(np.mean(chars)), 1),
        "context_chars_max": int(max(chars)),
        "context_tokens_mean": round(float(np.mean(tokens)), 1),
        "context_tokens_max": int(max(tokens)),
        "context_tokens_estimated": estimated,
    })
    indexed = view.indexed_pages()
    if indexed is not None:
        result["documents_not_indexed"] = sorted({q.doc for q in questions if document_key(q.doc) not in indexed})
        # A gold page past the document's end can never be a hit: a typo, or page numbers counted from 1 elsewhere.
        # Only those pages are listed; the question can still be found on its others, unless it has none.
        beyond = []
        for q in questions:
            count = indexed.get(document_key(q.doc))
            if count is not None and (pages := sorted(page for page in q.pages if page >= count)):
                beyond.append({"id": q.id, "doc": q.doc, "pages": pages, "document_pages": count,
                               "findable": len(pages) < len(q.pages)})
        result["gold_pages_beyond_document"] = beyond
    with_answers = sum(1 for q in questions if q.answers)
    before = sum(1 for record in records if record.get("hit_on_page_before"))
    if before >= max(2, with_answers / 2):
        result["gold_pages_look_one_based"] = {"questions": before, "with_answers": with_answers}
    if per_doc:
        result["per_doc"] = {"retrieval": "restricted to the gold document", "errors": 0,  # always there, for scripts
                             **summarize([record["per_doc"] for record in records], ks)}
    return result


def _details_handle(details) -> tuple[Optional[TextIO], bool]:
    if details is None:
        return None, False
    if hasattr(details, "write"):
        return details, False
    from docqa.batch.writers import open_for_writing

    check_details_file(Path(details))
    return open_for_writing(Path(details), "w"), True


# Every line of a details file has these; a file that holds anything else is not written over.
_DETAILS_KEYS = frozenset({"id", "doc", "pages", "question", "context_chars"})


def check_details_file(path: Path) -> None:
    """An InputError where ``path`` holds something other than an earlier evaluation's details (a results file, a
    config, questions): a details file is written over whole, and one typo lost hours of answers."""
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                record = json.loads(line)
                if not isinstance(record, dict) or not _DETAILS_KEYS <= record.keys():
                    raise ValueError(f"line {number}")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return  # a new file; a folder, or a file on the path, is refused where it is opened
    except (OSError, UnicodeDecodeError, ValueError) as error:
        where = f" ({error})" if str(error).startswith("line ") else ""
        raise InputError(f"--details {path} holds something other than an evaluation's details{where}, and would be "
                         f"written over; name a new file, or delete this one first") from None


def _check_ks(ks: Iterable[int]) -> list[int]:
    values = sorted(set(int(k) for k in ks))
    if not values or values[0] < 1:
        raise InputError("k values must be whole numbers of 1 or more")
    return values


def _ratio(count: int, total: int) -> Optional[float]:
    return round(count / total, 4) if total else None


def _percentile(values: Sequence[float], q: float) -> Optional[float]:
    return round(float(np.percentile(values, q)), 2) if values else None
