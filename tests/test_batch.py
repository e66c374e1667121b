"""Batch questions, resumable output and the per-document table, over a real index of generated PDFs.

The embedding model is replaced by a deterministic bag-of-words hashing embedder and the LLM by a
scripted fake, so these tests need no model files; retrieval, the store and DocQA are the real ones.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import yaml

from docqa.batch import (
    CSV_COLUMNS,
    BatchOutput,
    Question,
    csv_row,
    each_doc_documents,
    iter_batch,
    read_questions,
    run_batch,
    run_each_doc,
)
from docqa.cli import ask_main
from docqa.embeddings import Embedder
from docqa.errors import InputError
from docqa.ingest import build_index
from docqa.llm.base import LLM
from docqa.qa import DocQA
from docqa.settings import LLM as LLMSettings
from docqa.settings import Paths, Settings
from tests.support.pdfs import write_pdf

REPORTS = {
    "acme-2022.pdf": [
        "Acme Widgets annual report 2022. Revenue was 120 million dollars.",
        "Acme employed 300 people in Leeds at year end.",
        "The board proposed a dividend of 5 pence per share.",
    ],
    "acme-2023.pdf": [
        "Acme Widgets annual report 2023. Revenue was 150 million dollars.",
        "Acme employed 340 people in Leeds and York at year end.",
        "The board proposed a dividend of 6 pence per share.",
    ],
    "beta-2023.pdf": [
        "Beta Foods annual report 2023. Revenue was 80 million dollars.",
        "Beta employed 90 bakers in Bristol.",
    ],
}


class HashEmbedder(Embedder):
    """Bag of words hashed into 256 buckets, L2-normalised float32: shared words make similar vectors."""

    name = "hash"
    runtime = "fake"
    dimension = 256

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                vectors[row, zlib.crc32(word.encode()) % self.dimension] += 1.0
            vectors[row, 0] += 1e-3  # never the zero vector
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class FakeLLM(LLM):
    """Answers "<question> -> <first context line>"; raises for questions containing a word in ``fail_on``."""

    name = "fake"

    def __init__(self, fail_on: tuple[str, ...] = (), model_name: str = "fake-7b.gguf"):
        super().__init__(LLMSettings(context_length=4096, model_path=Path("models") / model_name))
        self.fail_on = fail_on
        self.asked: list[str] = []

    @property
    def context_length(self) -> int:
        return self.settings.context_length

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _generate(self, prompt: str) -> Iterator[bytes]:
        question = re.search(r"Question: (.*)", prompt).group(1).strip()
        context = re.search(r"Context: (.*)", prompt).group(1).strip()
        self.asked.append(question)
        for word in self.fail_on:
            if word in question:
                if word == "interrupt":
                    raise KeyboardInterrupt
                raise RuntimeError(f"model failed on {word}")
        for piece in (question, " -> ", context):
            yield piece.encode("utf-8")


@pytest.fixture
def fake_embedder(monkeypatch):
    monkeypatch.setattr("docqa.embeddings.create_embedder", lambda settings, **_: HashEmbedder())


def make_settings(root: Path) -> Settings:
    # Plain fused retrieval with the card's k: the expected ranks below are worked out for it.
    retrieval = {"k": 2, "named_documents": False, "max_per_page": 100}
    return Settings(paths=Paths(data=root / "data", vectorstore=root / "vectorstore", models=root / "models"),
                    retrieval=retrieval)


def write_reports(data: Path, reports: dict[str, list[str]]) -> None:
    for name, pages in reports.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        write_pdf(data / name, pages)


@pytest.fixture
def indexed(tmp_path, fake_embedder) -> Settings:
    """Settings of an index built from REPORTS with the hashing embedder."""
    settings = make_settings(tmp_path)
    write_reports(settings.paths.data, REPORTS)
    report = build_index(settings)
    assert sorted(report.added) == sorted(REPORTS)
    return settings


@pytest.fixture
def config(indexed, tmp_path) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"paths": {key: str(value) for key, value in indexed.paths.model_dump().items()}}))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- reading questions


def test_text_file_skips_blank_and_comment_lines_and_numbers_ids_by_line(tmp_path):
    path = tmp_path / "questions.txt"
    path.write_text("# revenue questions\nWhat was revenue?\n\n  How many staff?  \n", encoding="utf-8")
    assert read_questions(path) == [Question("q2", "What was revenue?"), Question("q4", "How many staff?")]
    # only line ends end a line: a form feed, NEL or U+2028 cut a question in two and renumbered the rest
    path.write_text("Revenue\x0cin 2022?\r\nStaff\x85numbers?\rCEO\u2028name?\nLast?", encoding="utf-8")
    assert [question.id for question in read_questions(path)] == ["q1", "q2", "q3", "q4"]


def test_jsonl_keeps_ids_and_docs_and_numbers_the_rest_by_line(tmp_path):
    path = tmp_path / "questions.jsonl"
    lines = [{"id": 7, "question": "What was revenue?", "doc": "acme-*.pdf"}, {}, {"question": "How many staff?"}]
    path.write_text("\n".join(json.dumps(line) if line else "" for line in lines) + "\n", encoding="utf-8")
    assert read_questions(path) == [Question("7", "What was revenue?", "acme-*.pdf"), Question("q3", "How many staff?")]


def test_jsonl_questions_take_several_doc_patterns_as_records_write_them(tmp_path, indexed):
    """A results record's list "doc" could not be fed back in ('"doc" must be a file name pattern (text)')."""
    path = tmp_path / "questions.jsonl"
    lines = [{"id": "a", "question": "Revenue?", "doc": ["beta*", "acme*"]}, {"question": "Staff?", "doc": ["beta*"]}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    questions = read_questions(path)
    assert questions == [Question("a", "Revenue?", ("beta*", "acme*")), Question("q2", "Staff?", "beta*")]
    out = tmp_path / "answers.jsonl"
    with DocQA(indexed, retrieval_only=True) as qa:
        run_batch(qa, questions, out)
        assert run_batch(qa, questions, out).skipped == 2  # the scope read back from the records is the same
    assert [record["doc"] for record in read_jsonl(out)] == [["beta*", "acme*"], "beta*"]
    for bad in ('{"question": "Q?", "doc": []}', '{"question": "Q?", "doc": ["", "x"]}', '{"question": "Q?", "doc": 3}'):
        path.write_text(bad + "\n", encoding="utf-8")
        with pytest.raises(InputError, match=r'line 1: "doc" must be a file name pattern \(text\) or a list of them'):
            read_questions(path)


@pytest.mark.parametrize("identifier", ["true", "{}", "[1]"])
def test_jsonl_ids_must_be_text_or_numbers(tmp_path, identifier):
    """true became the id "True" and {} the id "{}"."""
    path = tmp_path / "questions.jsonl"
    path.write_text(f'{{"id": {identifier}, "question": "Q?"}}\n', encoding="utf-8")
    with pytest.raises(InputError, match=f'line 1: "id" must be text or a number, not {re.escape(identifier)}'):
        read_questions(path)


def test_jsonl_questions_may_hold_a_raw_line_separator(tmp_path):
    path = tmp_path / "questions.jsonl"
    path.write_text('{"question": "Who is the CEO\u2028of Beta?"}\n{"question": "Revenue?"}\n', encoding="utf-8")
    assert read_questions(path) == [Question("q1", "Who is the CEO\u2028of Beta?"), Question("q2", "Revenue?")]


def test_csv_needs_a_question_column_and_numbers_rows_after_the_header(tmp_path):
    path = tmp_path / "questions.csv"
    path.write_text('doc,question\nbeta*.pdf,"Revenue, in dollars?"\n,How many staff?\n', encoding="utf-8")
    assert read_questions(path) == [Question("q1", "Revenue, in dollars?", "beta*.pdf"), Question("q2", "How many staff?")]
    path.write_text("text\nWhat was revenue?\n", encoding="utf-8")
    with pytest.raises(InputError, match='"question" column'):
        read_questions(path)
    path.write_text("ID,Question\n7,What was revenue?\n", encoding="utf-8")  # as a spreadsheet heads them
    assert read_questions(path) == [Question("7", "What was revenue?")]
    tsv = tmp_path / "questions.tsv"  # read as plain text, its header was a question
    tsv.write_text("id\tquestion\nr1\tRevenue, in dollars?\n", encoding="utf-8")
    assert read_questions(tsv) == [Question("r1", "Revenue, in dollars?")]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("q.jsonl", '{"question": "ok"}\n{"question": \n', "line 2: not valid JSON"),
        ("q.jsonl", '{"id": "a", "question": "one"}\n{"id": "a", "question": "two"}\n', "id 'a' appears twice"),
        # written once by the user, once given to the line without an id: said why
        ("q.jsonl", '{"id": "q2", "question": "one"}\n{"question": "two"}\n',
         "id 'q2' appears twice; ids must be unique to resume a batch (a question without an id is numbered by its "
         "line or row, as q<number>: give it an id of its own)"),
        ("q.jsonl", '{"id": "a"}\n', 'line 1: no "question"'),
        ("q.txt", "\n# only a comment\n", "no questions found"),
        # written as its escape in a results file, it never matched again: asked anew on every run
        ("q.jsonl", '{"id": "a\\ud800", "question": "one"}\n', "line 1: the id 'a\\ud800' is not valid Unicode text"),
    ],
)
def test_bad_batch_files_say_where(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(message)):
        read_questions(path)


# ---------------------------------------------------------------- answering


def test_iter_batch_loads_once_restricts_by_doc_and_goes_on_after_a_failure(indexed):
    questions = [
        {"id": "a", "question": "What was Acme revenue?", "doc": "acme-2023.pdf"},
        {"id": "b", "question": "What was Acme revenue?", "doc": "nothing-*.pdf"},
        {"id": "c", "question": "How many bakers did Beta employ?"},
        {"id": "d", "question": "What was revenue?"},
    ]
    with DocQA(indexed, retrieval_only=True) as qa:
        records = list(iter_batch(qa, questions, k=3, doc="beta*"))
    assert [r["id"] for r in records] == ["a", "b", "c", "d"]
    first, failed, third, fourth = records
    assert {s["document"] for s in first["sources"]} == {"acme-2023.pdf"} and first["doc"] == "acme-2023.pdf"
    assert first["answer"] is None and first["error"] is None and len(first["sources"]) == 3
    assert failed["error"].startswith("no indexed document matches 'nothing-*.pdf'; indexed: acme-2022.pdf")
    assert failed["answer"] is None and failed["sources"] == []
    assert set(failed) == set(first)  # the same keys: searched, cut_off and answered were missing
    assert (third["sources"][0]["document"], third["sources"][0]["page_number"]) == ("beta-2023.pdf", 2)
    assert {s["document"] for s in fourth["sources"]} == {"beta-2023.pdf"}  # the batch-wide doc applies
    assert records[0]["timings"]["load"] > 0 and records[2]["timings"]["load"] == 0  # loaded once


def test_run_batch_writes_jsonl_records_and_a_rerun_only_retries_what_failed(indexed, tmp_path):
    out = tmp_path / "out" / "answers.jsonl"
    questions = [Question("q1", "What was Acme revenue in 2023?"), Question("q2", "explode: how many bakers?"),
                 Question("q3", "What dividend did the board propose?")]
    llm = FakeLLM(fail_on=("explode",))
    with DocQA(indexed, llm=llm) as qa:
        summary = run_batch(qa, questions, out)
    assert (summary.answered, summary.failed, summary.skipped) == (2, 1, 0)
    records = read_jsonl(out)
    assert [(r["id"], r["error"]) for r in records] == [("q1", None), ("q2", "RuntimeError: model failed on explode"),
                                                        ("q3", None)]
    assert records[0]["answer"].startswith("What was Acme revenue in 2023? -> Acme Widgets annual report 2023")
    assert set(records[0]) >= {"id", "question", "answer", "sources", "timings", "notes", "doc", "error"}

    llm = FakeLLM()
    with DocQA(indexed, llm=llm) as qa:
        summary = run_batch(qa, questions, out)
    assert llm.asked == ["explode: how many bakers?"]
    assert (summary.answered, summary.failed, summary.skipped) == (1, 0, 2)
    assert [(r["id"], r["error"]) for r in read_jsonl(out)] == [("q1", None), ("q3", None), ("q2", None)]


def test_interrupted_run_keeps_every_flushed_answer_and_resumes_after_them(indexed, tmp_path):
    out = tmp_path / "answers.jsonl"
    questions = [Question(f"q{n}", text) for n, text in
                 enumerate(["Acme revenue?", "Beta bakers?", "interrupt now", "Acme dividend?"], 1)]
    with DocQA(indexed, llm=FakeLLM(fail_on=("interrupt",))) as qa, pytest.raises(KeyboardInterrupt):
        run_batch(qa, questions, out)
    assert [r["id"] for r in read_jsonl(out)] == ["q1", "q2"]
    with out.open("a", encoding="utf-8") as handle:  # a kill in the middle of writing a record
        handle.write('{"id": "q3", "question": "interr')
    llm = FakeLLM()
    with DocQA(indexed, llm=llm) as qa:
        run_batch(qa, questions, out)
    assert llm.asked == ["interrupt now", "Acme dividend?"]
    assert [r["id"] for r in read_jsonl(out)] == ["q1", "q2", "q3", "q4"]


@pytest.mark.parametrize("name", ["answers.jsonl", "answers.csv"])
def test_an_answering_run_stopped_part_way_keeps_the_passages_it_had_not_answered(indexed, tmp_path, name):
    """It dropped every passages-only record it was to answer when it started: stopped after one answer, the
    retrieval-only run's passages for the others were gone."""
    out = tmp_path / name
    questions = [Question(f"q{n}", text) for n, text in enumerate(["Acme revenue?", "interrupt now", "Beta bakers?"], 1)]
    with DocQA(indexed, retrieval_only=True) as qa:
        run_batch(qa, questions, out)
    with DocQA(indexed, llm=FakeLLM(fail_on=("interrupt",))) as qa, pytest.raises(KeyboardInterrupt):
        run_batch(qa, questions, out)
    records = _records(out)
    assert sorted((record["id"], record["answered"]) for record in records) == [
        ("q1", True), ("q2", None), ("q3", None)]  # each id once: the answer in place of q1's passages
    llm = FakeLLM()
    with DocQA(indexed, llm=llm) as qa:
        summary = run_batch(qa, questions, out)
    assert llm.asked == ["interrupt now", "Beta bakers?"] and summary.skipped == 1
    assert sorted((record["id"], record["answered"]) for record in _records(out)) == [
        ("q1", True), ("q2", True), ("q3", True)]


def test_passages_an_answer_replaced_are_dropped_when_a_killed_run_left_both(indexed, tmp_path):
    """A run killed outright (kill -9) cannot drop the passages it answered: the next run does."""
    out, answered = tmp_path / "answers.jsonl", tmp_path / "answered.jsonl"
    questions = [Question("q1", "Acme revenue?"), Question("q2", "Beta bakers?")]
    with DocQA(indexed, retrieval_only=True) as qa:
        run_batch(qa, questions, out)
    with DocQA(indexed, llm=FakeLLM()) as qa:
        run_batch(qa, questions[:1], answered)
    with out.open("a", encoding="utf-8") as handle:  # what the killed run had appended
        handle.write(answered.read_text(encoding="utf-8"))
    with DocQA(indexed, retrieval_only=True) as qa:
        assert run_batch(qa, questions, out).skipped == 2
    assert [(record["id"], record["answered"]) for record in read_jsonl(out)] == [("q2", None), ("q1", True)]


def _records(path: Path) -> list[dict]:
    """The records of a results file, JSON Lines or CSV, with answered as True, False or None."""
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    with path.open(encoding="utf-8", newline="") as handle:
        return [{**row, "answered": {"yes": True, "no": False}.get(row["answered"])} for row in csv.DictReader(handle)]


def test_csv_output_is_flat_and_resumable(indexed, tmp_path):
    out = tmp_path / "answers.csv"
    questions = [Question("r1", "How many bakers did Beta employ?"), Question("r2", "explode, please")]
    with DocQA(indexed, llm=FakeLLM(fail_on=("explode",))) as qa:
        run_batch(qa, questions, out, k=1)
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert list(rows[0]) == CSV_COLUMNS
    assert (rows[0]["id"], rows[0]["document"], rows[0]["page"], rows[0]["sources"]) == (
        "r1", "beta-2023.pdf", "2", "beta-2023.pdf p.2")
    assert rows[0]["answer"].endswith("Beta employed 90 bakers in Bristol.") and rows[0]["error"] == ""
    assert (rows[0]["answered"], rows[1]["answered"]) == ("yes", "")  # the failed question has no answer
    assert rows[0]["passage"] == "Beta employed 90 bakers in Bristol."
    assert (rows[1]["id"], rows[1]["answer"], rows[1]["error"]) == ("r2", "", "RuntimeError: model failed on explode")
    with out.open("a", encoding="utf-8") as handle:  # a row cut short inside a quoted answer
        handle.write('r9,"What?",,"half an ans')
    llm = FakeLLM()
    with DocQA(indexed, llm=llm) as qa:
        summary = run_batch(qa, questions, out, k=1)
    assert llm.asked == ["explode, please"] and summary.skipped == 1
    assert [(row["id"], row["error"]) for row in csv.DictReader(out.open(encoding="utf-8", newline=""))] == [
        ("r1", ""), ("r2", "")]


@pytest.mark.parametrize("added", [("searched",), ("searched", "model"), ("searched", "model", "answered")])
def test_a_csv_written_before_the_searched_answered_and_model_columns_is_resumed_in_its_own_columns(indexed, tmp_path, added):
    """Adding a column must not refuse the results files users already have ('other columns')."""
    out = tmp_path / "answers.csv"
    questions = [Question("r1", "How many bakers did Beta employ?"), Question("r2", "Acme dividend?")]
    with DocQA(indexed, llm=FakeLLM()) as qa:
        run_batch(qa, questions[:1], out, k=1)
    old_columns = [column for column in CSV_COLUMNS if column not in added]
    with out.open(encoding="utf-8", newline="") as handle:
        rows = [{column: row[column] for column in old_columns} for row in csv.DictReader(handle)]
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, old_columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    llm = FakeLLM()
    with DocQA(indexed, llm=llm) as qa:
        summary = run_batch(qa, questions, out, k=1)
    assert llm.asked == ["Acme dividend?"] and summary.skipped == 1
    with out.open(encoding="utf-8", newline="") as handle:
        resumed = list(csv.DictReader(handle))
    assert list(resumed[0]) == old_columns and [row["id"] for row in resumed] == ["r1", "r2"]
    assert resumed[1]["document"] == "acme-2023.pdf" and resumed[1]["answer"].startswith("Acme dividend? -> ")


def test_output_needs_a_known_extension_and_a_docqa_csv_to_resume(tmp_path):
    for name in ("answers.txt", "answers.json"):  # .json took JSON Lines, which json.load of it refuses
        with pytest.raises(InputError, match=r"use a \.jsonl \(JSON Lines, one record per line\) or \.csv"):
            BatchOutput(tmp_path / name)
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("name,value\na,1\n", encoding="utf-8")
    with pytest.raises(InputError, match="other columns"):
        BatchOutput(foreign).open()
    assert foreign.read_text(encoding="utf-8") == "name,value\na,1\n"


@pytest.mark.parametrize("content", [
    "my notes\nmore notes\nthird line\n",  # not JSON
    '{"foo": 1}\n{"bar": 2}\n',  # JSON, but no docqa records
    '{"id": "q1", "question": "Q?", "answer": "A", "error": null}\nnot a record\n{"id": "q2"',  # a bad middle line
])
def test_a_jsonl_out_that_holds_other_data_is_refused_and_left_as_it_was(tmp_path, content):
    out = tmp_path / "notes.jsonl"
    out.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=r"is not a docqa results file \(line \d is no record a batch writes\)"):
        BatchOutput(out).open()
    assert out.read_text(encoding="utf-8") == content



@pytest.mark.parametrize("name", ["answers.jsonl", "answers.csv"])
def test_a_second_run_into_the_same_out_is_refused_while_the_first_writes(tmp_path, name):
    """Two batches given one --out appended every answer twice (600 lines for 300 ids), and a resume kept both."""
    from docqa.errors import OutputLockedError

    out = tmp_path / name
    record = {"id": "q1", "question": "Q?", "answer": "A", "sources": [], "timings": None, "notes": [], "doc": None,
              "error": None}
    with BatchOutput(out) as first:
        with pytest.raises(OutputLockedError, match=f"another batch is writing {re.escape(str(out))}"):
            BatchOutput(out).open()
        first.write(record)
    # the first one done, a rerun resumes: q1 is answered once, and the file was rewritten (a broken last line) ...
    out.write_text(out.read_text(encoding="utf-8") + "{\"id\": \"q2\"", encoding="utf-8")
    with BatchOutput(out) as resumed:
        assert resumed.done == {"q1"}
        # ... under a lock taken on the new copy before it took the name
        with pytest.raises(OutputLockedError):
            BatchOutput(out).open()
        resumed.write({**record, "id": "q3"})
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [line.startswith("q") or '"id": "q' in line for line in lines].count(True) == 2, lines
    assert OutputLockedError.exit_code == 6


def test_a_resume_through_a_link_rewrites_the_file_it_names(tmp_path):
    """The rewrite replaced the link itself with a file, and the file it named kept the cut-short line."""
    real = tmp_path / "real" / "answers.jsonl"
    real.parent.mkdir()
    real.write_text(json.dumps({"id": "q1", "question": "Q?", "answer": "A", "error": None}) + '\n{"id": "q2"',
                    encoding="utf-8")
    link = tmp_path / "answers.jsonl"
    link.symlink_to(real)
    with BatchOutput(link) as output:
        assert output.done == {"q1"}
    assert link.is_symlink() and real.read_text(encoding="utf-8").endswith('"error": null}\n')

def test_a_csv_out_with_a_broken_row_before_the_last_is_refused(tmp_path):
    out = tmp_path / "answers.csv"
    good = "q1,Q?,,A" + "," * (len(CSV_COLUMNS) - 4) + "\n"
    content = ",".join(CSV_COLUMNS) + "\n" + "q0,short row\n" + good
    out.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=r"\(row 2 is no record"):
        BatchOutput(out).open()
    assert out.read_text(encoding="utf-8") == content


@pytest.mark.parametrize("name", ["answers.jsonl", "answers.csv"])
@pytest.mark.parametrize("retrieval_only", [False, True])  # an answer, or passages an answering run would redo
def test_resuming_with_other_questions_under_the_same_ids_is_refused(indexed, tmp_path, name, retrieval_only):
    out = tmp_path / name
    with DocQA(indexed, llm=None if retrieval_only else FakeLLM(), retrieval_only=retrieval_only) as qa:
        run_batch(qa, [Question("q1", "What was Acme revenue in 2023?")], out)
    before = out.read_text(encoding="utf-8")
    llm = FakeLLM()
    with DocQA(indexed, llm=llm) as qa, pytest.raises(
            InputError, match=r"holds another question under id 'q1' \('What was Acme revenue in 2023\?'\)"):
        run_batch(qa, [Question("q1", "Who is the auditor?"), Question("q2", "How many bakers?")], out)
    assert llm.asked == [] and out.read_text(encoding="utf-8") == before


@pytest.mark.parametrize("name", ["answers.jsonl", "answers.csv"])
def test_a_results_file_saved_with_a_byte_order_mark_resumes(indexed, tmp_path, name):
    """Saved again by Excel ("CSV UTF-8") or an editor, it was 'other columns' or 'not a docqa results file'."""
    out = tmp_path / name
    questions = [Question("q1", "How many bakers?"), Question("q2", "Acme revenue?")]
    with DocQA(indexed, llm=FakeLLM()) as qa:
        run_batch(qa, questions[:1], out)
    out.write_bytes(b"\xef\xbb\xbf" + out.read_bytes())
    llm = FakeLLM()
    with DocQA(indexed, llm=llm) as qa:
        summary = run_batch(qa, questions, out)
    assert llm.asked == ["Acme revenue?"] and summary.skipped == 1


@pytest.mark.parametrize("name", ["answers.jsonl", "answers.csv"])
def test_resuming_with_another_scope_is_refused(indexed, tmp_path, name):
    """A rerun with a corrected --doc said '1 already in' and kept the answers searched in the old scope."""
    out = tmp_path / name
    questions = [Question("q1", "How many bakers?"), Question("q2", "Acme revenue?", doc="acme*")]
    with DocQA(indexed, llm=FakeLLM()) as qa:
        run_batch(qa, questions, out, doc=["beta*", "acme*"])
    before = out.read_text(encoding="utf-8")
    llm = FakeLLM()
    with DocQA(indexed, llm=llm) as qa:
        with pytest.raises(InputError, match=r"holds the answer to 'q1' from the documents matching 'beta\*, acme\*', "
                                             r"and this run searches the documents matching 'beta\*'; write to another"):
            run_batch(qa, questions, out, doc="beta*")
        with pytest.raises(InputError, match=r"from the documents matching 'acme\*', and this run searches every document"):
            run_batch(qa, [Question("q2", "Acme revenue?")], out, doc=None)
        assert llm.asked == [] and out.read_text(encoding="utf-8") == before
        assert run_batch(qa, questions, out, doc=["beta*", "acme*"]).skipped == 2  # the same scope resumes


@pytest.mark.parametrize("name", ["answers.jsonl", "answers.csv"])
def test_resuming_with_another_model_is_refused(indexed, tmp_path, name):
    """A run with the demo model, resumed with the real one, said '2 already in' and kept the demo's answers."""
    out = tmp_path / name
    questions = [Question("q1", "How many bakers?"), Question("q2", "Acme revenue?")]
    with DocQA(indexed, llm=FakeLLM(model_name="SmolLM2-135M-Instruct.Q4_1.gguf")) as qa:
        run_batch(qa, questions[:1], out)
    before = out.read_text(encoding="utf-8")
    llm = FakeLLM(model_name="llama-2-7b-chat.Q8_0.gguf")
    with DocQA(indexed, llm=llm) as qa, pytest.raises(
            InputError, match=r"holds the answer to 'q1' by the model SmolLM2-135M-Instruct\.Q4_1\.gguf, and this "
                              r"run answers with llama-2-7b-chat\.Q8_0\.gguf; write to another --out, or delete"):
        run_batch(qa, questions, out)
    assert llm.asked == [] and out.read_text(encoding="utf-8") == before
    same = FakeLLM(model_name="SmolLM2-135M-Instruct.Q4_1.gguf")
    with DocQA(indexed, llm=same) as qa:
        assert run_batch(qa, questions, out).skipped == 1  # the same model resumes
    assert same.asked == ["Acme revenue?"]
    with DocQA(indexed, retrieval_only=True) as qa:  # passages only: whichever model answered, the passages hold
        assert run_batch(qa, questions, out).skipped == 2


@pytest.mark.parametrize("name", ["answers.jsonl", "answers.csv"])
def test_a_question_with_line_separators_resumes(indexed, tmp_path, name):
    """U+2028 is written as it is in JSONL (it is no line end there), and a CSV cell keeps its "\r\n"."""
    out = tmp_path / name
    questions = [Question("q1", "Who is the CEO\u2028of Beta?\u0085"), Question("q2", "net debt\r\nat year end")]
    with DocQA(indexed, retrieval_only=True) as qa:
        assert run_batch(qa, questions, out, k=1).answered == 2
        summary = run_batch(qa, questions, out, k=1)
    assert (summary.answered, summary.skipped) == (0, 2)


def test_a_failed_question_whose_text_was_fixed_is_asked_again(indexed, tmp_path):
    out = tmp_path / "answers.jsonl"
    with DocQA(indexed, retrieval_only=True) as qa:
        assert run_batch(qa, [Question("b", "bad \ud800 text")], out, k=1).failed == 1
        summary = run_batch(qa, [Question("b", "How many bakers did Beta employ?")], out, k=1)
    assert (summary.answered, summary.failed) == (1, 0)
    assert [(r["id"], r["question"], r["error"]) for r in read_jsonl(out)] == [
        ("b", "How many bakers did Beta employ?", None)]


@pytest.mark.parametrize("name", ["answers.jsonl", "answers.csv"])
def test_an_answering_run_asks_again_what_a_retrieval_only_run_wrote(indexed, tmp_path, name):
    out = tmp_path / name
    questions = [Question("q1", "What was Acme revenue in 2023?"), Question("q2", "How many bakers did Beta employ?")]
    with DocQA(indexed, retrieval_only=True) as qa:
        assert run_batch(qa, questions, out, k=1).answered == 2
    llm = FakeLLM()
    with DocQA(indexed, llm=llm) as qa:
        summary = run_batch(qa, questions[:1], out, k=1)
    assert llm.asked == ["What was Acme revenue in 2023?"] and (summary.answered, summary.skipped) == (1, 0)
    with DocQA(indexed, retrieval_only=True) as qa:  # passages only: the answer holds them already
        summary = run_batch(qa, questions, out, k=1)
    assert (summary.answered, summary.skipped) == (0, 2)
    if name.endswith(".jsonl"):
        records = read_jsonl(out)
    else:
        records = [{"id": row["id"], "answer": row["answer"] or None}
                   for row in csv.DictReader(out.open(encoding="utf-8", newline=""))]
    # q2, which the answering run did not ask, keeps its passages
    assert [(r["id"], r["answer"] is not None) for r in records] == [("q2", False), ("q1", True)]



def test_a_csv_row_names_every_pattern_of_a_batch_wide_doc_and_reads_back_as_them(indexed, tmp_path):
    """Several patterns were joined by commas: fed back as questions, the cell was one pattern matching nothing."""
    with DocQA(indexed, retrieval_only=True) as qa:
        (record,) = iter_batch(qa, ["How many bakers did Beta employ?"], k=1, doc=["beta*", "acme-2023*"])
        assert csv_row(record)[CSV_COLUMNS.index("doc")] == '["beta*", "acme-2023*"]'
        out = tmp_path / "answers.csv"
        run_batch(qa, [Question("b1", "How many bakers did Beta employ?", ("beta*", "acme-2023*"))], out)
        (question,) = read_questions(out)
        assert question.doc == ("beta*", "acme-2023*")
        again = tmp_path / "again.jsonl"
        run_batch(qa, [question], again)
        assert read_jsonl(again)[0]["error"] is None
        # A results file an earlier docqa wrote, its patterns joined by commas, resumes as the same scope
        out.write_text(out.read_text(encoding="utf-8").replace('"[""beta*"", ""acme-2023*""]"', '"beta*, acme-2023*"'),
                       encoding="utf-8")
        assert "beta*, acme-2023*" in out.read_text(encoding="utf-8")
        summary = run_batch(qa, [Question("b1", "How many bakers did Beta employ?", ("beta*", "acme-2023*"))], out)
    assert summary.skipped == 1

# ---------------------------------------------------------------- one row per document


def test_each_doc_table_has_a_row_per_document_and_the_cited_page_per_question(indexed):
    questions = [Question("q1", "How many people were employed?"), Question("q2", "What dividend per share?")]
    handle = io.StringIO()
    with DocQA(indexed, llm=FakeLLM()) as qa:
        failed = run_each_doc(qa, questions, handle, "csv", k=2)
    rows = list(csv.reader(io.StringIO(handle.getvalue())))
    assert failed == 0
    assert rows[0] == ["document", "q1: How many people were employed?", "q1 page",
                       "q2: What dividend per share?", "q2 page"]
    assert [row[0] for row in rows[1:]] == ["acme-2022.pdf", "acme-2023.pdf", "beta-2023.pdf"]
    assert [row[2] for row in rows[1:]] == ["2", "2", "2"]  # the staff page of each report
    assert [row[4] for row in rows[1:3]] == ["3", "3"]  # the dividend page; Beta reports none
    assert rows[1][1].endswith("Acme employed 300 people in Leeds at year end.")
    assert rows[2][3].endswith("The board proposed a dividend of 6 pence per share.")


def test_each_doc_markdown_filters_by_pattern_and_shows_passages_without_llm(indexed):
    handle = io.StringIO()
    with DocQA(indexed, retrieval_only=True) as qa:
        run_each_doc(qa, [Question("q1", "How many people | staff?")], handle, "md", doc="acme-*")
    lines = handle.getvalue().splitlines()
    assert lines == [
        "| document | q1: How many people \\| staff? | q1 page |",
        "| --- | --- | --- |",
        "| acme-2022.pdf | Acme employed 300 people in Leeds at year end. | 2 |",
        "| acme-2023.pdf | Acme employed 340 people in Leeds and York at year end. | 2 |",
    ]


def test_each_doc_keeps_a_document_apart_from_a_namesake_in_a_subfolder(tmp_path, fake_embedder):
    settings = make_settings(tmp_path)
    write_reports(settings.paths.data, {"report.pdf": ["Top level: revenue 10."],
                                        "2021/report.pdf": ["Archived: revenue 20."]})
    build_index(settings)
    with DocQA(settings, retrieval_only=True) as qa:
        assert each_doc_documents(qa) == ["2021/report.pdf", "report.pdf"]
        assert each_doc_documents(qa, "report.pdf") == ["report.pdf"]
        handle = io.StringIO()
        run_each_doc(qa, [Question("q1", "What was revenue?")], handle, "csv", k=4)
    rows = list(csv.reader(io.StringIO(handle.getvalue())))[1:]
    assert [row[:2] for row in rows] == [["2021/report.pdf", "Archived: revenue 20."],
                                        ["report.pdf", "Top level: revenue 10."]]


def test_each_doc_csv_keeps_a_formula_like_cell_as_text(tmp_path, fake_embedder):
    settings = make_settings(tmp_path)
    write_reports(settings.paths.data, {"=HYPERLINK(1).pdf": ["-5% was the change in revenue."]})
    build_index(settings)
    handle = io.StringIO()
    with DocQA(settings, retrieval_only=True) as qa:
        run_each_doc(qa, [Question("q1", "@What was the change in revenue?")], handle, "csv")
    header, row = csv.reader(io.StringIO(handle.getvalue()))
    assert header[1] == "q1: @What was the change in revenue?"  # starts with "q1", no formula
    assert row[:2] == ["'=HYPERLINK(1).pdf", "'-5% was the change in revenue."]


def test_each_doc_unknown_pattern_names_the_indexed_documents(indexed):
    with DocQA(indexed, retrieval_only=True) as qa, pytest.raises(InputError, match="indexed: acme-2022.pdf, acme-2023"):
        run_each_doc(qa, [Question("q1", "Revenue?")], io.StringIO(), "csv", doc="gamma*")


def test_run_batch_and_each_doc_take_what_iter_batch_and_ask_take(indexed, tmp_path):
    """From Python: a doc matching nothing wrote a results file of failures (the command line refused it); a list of
    texts, which iter_batch takes, failed with AttributeError; a Path, which ask takes, was refused."""
    from pathlib import Path

    out = tmp_path / "answers.jsonl"
    with DocQA(indexed, retrieval_only=True) as qa:
        with pytest.raises(InputError, match="no indexed document matches '\\*tesla\\*'"):
            run_batch(qa, ["Revenue?"], out, doc="*tesla*")
        assert not out.exists()
        data = qa.settings.path(qa.settings.paths.data)
        summary = run_batch(qa, ["How many bakers?", "Revenue?"], out, k=1, doc=data / "beta-2023.pdf")
        handle = io.StringIO()
        assert run_each_doc(qa, ["Revenue?"], handle, "csv", doc=Path("acme-2022.pdf")) == 0
    assert (summary.answered, summary.failed) == (2, 0)
    assert [(r["id"], r["doc"], r["sources"][0]["document"]) for r in read_jsonl(out)] == [
        ("q1", "beta-2023.pdf", "beta-2023.pdf"), ("q2", "beta-2023.pdf", "beta-2023.pdf")]
    assert [row.split(",")[0] for row in handle.getvalue().splitlines()[1:]] == ["acme-2022.pdf"]


def test_each_doc_refuses_a_question_with_its_own_doc(indexed):
    """From Python it logged a warning and wrote a table that did not ask what the question asked."""
    handle = io.StringIO()
    with DocQA(indexed, retrieval_only=True) as qa, pytest.raises(InputError, match='"doc" of question q2'):
        run_each_doc(qa, [Question("q1", "Revenue?"), Question("q2", "Revenue?", doc="acme-2022.pdf")], handle, "csv")
    assert handle.getvalue() == ""


# ---------------------------------------------------------------- command line


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch", "q.txt"], "the following arguments are required: --out"),
        (["question", "--k", "1", "2"], "unrecognized arguments: 2"),
        (["question", "--k", "0"], "--k: must be 1 or more"),
        (["question", "--per-doc"], "unrecognized arguments: --per-doc"),
        (["question", "--batch", "q.txt", "--out", "a.jsonl"], "unrecognized arguments: question"),
        (["--evaluate", "gold.jsonl", "--batch", "q.txt"], "unrecognized arguments: --batch q.txt"),
        (["--each-doc", "question", "--batch", "q.txt"], "each-doc takes a question or --batch FILE, not both"),
        (["--each-doc"], "each-doc needs a question or --batch FILE"),
        (["--each-doc", "--batch", "q.csv", "--out", "q.csv"], "--out must not be the questions file"),
        (["batch", "q.txt", "--out", "q.txt"], "--out must not be the questions file"),
    ],
)
def test_flags_of_another_command_are_refused_before_anything_loads(argv, message, capsys, monkeypatch):
    import docqa.qa

    monkeypatch.setattr(docqa.qa, "DocQA", lambda *args, **kwargs: pytest.fail("loaded"))
    assert ask_main(argv) == 2
    assert message in capsys.readouterr().err



@pytest.mark.parametrize("out_content, message", [
    (None, "another batch is writing"),  # locked by a run under way
    ("my notes\n", "is not a docqa results file"),  # another program's data
])
def test_a_batch_s_out_is_checked_before_the_model_loads(config, tmp_path, capsys, monkeypatch, out_content, message):
    """A 7B model took minutes to load before the batch said its --out could not be used."""
    import docqa.qa

    questions = tmp_path / "questions.txt"
    questions.write_text("How many bakers?\n", encoding="utf-8")
    out = tmp_path / "answers.jsonl"
    monkeypatch.setattr(docqa.qa, "DocQA", lambda *args, **kwargs: pytest.fail("loaded"))
    argv = ["--config", str(config), "--batch", str(questions), "--out", str(out)]
    if out_content is None:
        with BatchOutput(out):
            code = ask_main(argv)
    else:
        out.write_text(out_content, encoding="utf-8")
        code = ask_main(argv)
    assert code == (6 if out_content is None else 2)
    assert message in capsys.readouterr().err
    fresh = tmp_path / "fresh.csv"  # a run that fails later (no index) leaves no file the check made
    monkeypatch.setattr(docqa.qa, "DocQA", lambda *args, **kwargs: (_ for _ in ()).throw(InputError("no index")))
    assert ask_main(["--config", str(config), "--batch", str(questions), "--out", str(fresh)]) == 2
    assert not fresh.exists()
    # nor does the check change a file: an answering run drops the passages a retrieval-only run left, and one
    # that then failed (no model) had emptied the file
    passages = tmp_path / "passages.jsonl"
    passages.write_text(json.dumps({"id": "q1", "question": "How many bakers?", "answer": None, "sources": [],
                                    "error": None}) + "\n", encoding="utf-8")
    before = passages.read_bytes()
    assert ask_main(["--config", str(config), "--batch", str(questions), "--out", str(passages)]) == 2
    assert passages.read_bytes() == before

def test_cli_batch_resumes_and_each_doc_writes_markdown(config, tmp_path, capsys):
    batch = tmp_path / "questions.jsonl"
    batch.write_text('{"id": "x", "question": "How many bakers?"}\n'
                     '{"id": "y", "question": "Revenue?", "doc": "acme-2022.pdf"}\n'
                     '{"id": "z", "question": "Revenue?", "doc": "gamma.pdf"}\n', encoding="utf-8")
    out = tmp_path / "answers.jsonl"
    argv = ["--config", str(config), "--batch", str(batch), "--out", str(out), "--retrieval-only", "--k", "1"]
    assert ask_main(argv) == 1  # one question failed
    records = read_jsonl(out)
    assert [(r["id"], r["sources"][0]["document"] if r["sources"] else r["error"][:27]) for r in records] == [
        ("x", "beta-2023.pdf"), ("y", "acme-2022.pdf"), ("z", "no indexed document matches")]
    # nothing was answered: "2 answered" was said of passages
    assert "2 retrieved (no model: passages only), 1 failed, 0 already in" in capsys.readouterr().err
    assert ask_main(argv) == 1
    assert "0 retrieved (no model: passages only), 1 failed, 2 already in" in capsys.readouterr().err
    csv_out = tmp_path / "answers.csv"  # says what was searched, as the command line does
    assert ask_main([*argv[:5], str(csv_out), *argv[6:]]) == 1
    capsys.readouterr()
    assert [row["searched"] for row in csv.DictReader(csv_out.open(encoding="utf-8", newline=""))] == [
        "all 3 documents", "1 document matching --doc: acme-2022.pdf", ""]
    assert [r["id"] for r in read_jsonl(out)] == ["x", "y", "z"]

    table = tmp_path / "table.md"
    assert ask_main(["--config", str(config), "How many bakers?", "--each-doc", "--doc", "beta*",
                     "--retrieval-only", "--out", str(table)]) == 0
    assert table.read_text(encoding="utf-8").splitlines()[2] == "| beta-2023.pdf | Beta employed 90 bakers in Bristol. | 2 |"


def test_cli_batch_refuses_another_models_answers_before_loading_the_model(indexed, config, tmp_path, capsys):
    """Checked with --out's other problems, before the model's minutes of loading (here it would fail: the
    configured Llama-2 file is not downloaded)."""
    questions = tmp_path / "questions.txt"
    questions.write_text("How many bakers?\n", encoding="utf-8")
    out = tmp_path / "answers.csv"
    with DocQA(indexed, llm=FakeLLM(model_name="SmolLM2-135M-Instruct.Q4_1.gguf")) as qa:
        run_batch(qa, read_questions(questions), out)
    before = out.read_text(encoding="utf-8")
    assert ask_main(["--config", str(config), "--batch", str(questions), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"error: {out} holds the answer to 'q1' by the model SmolLM2-135M-Instruct.Q4_1.gguf, and this run answers "
        f"with llama-2-7b-chat.Q8_0.gguf; write to another --out, or delete the file to ask again"]
    assert out.read_text(encoding="utf-8") == before
    assert ask_main(["--config", str(config), "--batch", str(questions), "--out", str(out), "--retrieval-only"]) == 0


def test_each_doc_never_writes_over_what_is_not_its_own_table(config, tmp_path, capsys):
    """--out was opened for writing at once: a batch's answers or any other file under that name was lost."""
    answers = tmp_path / "answers.csv"
    answers.write_text("id,question,answer\nx,How many bakers?,90\n", encoding="utf-8")
    argv = ["--config", str(config), "--each-doc", "How many bakers?", "--retrieval-only", "--out", str(answers)]
    assert ask_main(argv) == 2
    assert f"--out {answers} holds something other than an each-doc table" in capsys.readouterr().err
    assert answers.read_text(encoding="utf-8") == "id,question,answer\nx,How many bakers?,90\n"
    table = tmp_path / "table.csv"
    table.write_text('document,q1: old,q1 page\nold.pdf,old answer,1\n', encoding="utf-8")
    assert ask_main([*argv[:-1], str(table)]) == 0  # an earlier table of its own is replaced
    assert table.read_text(encoding="utf-8").splitlines()[0] == "document,q1: How many bakers?,q1 page"
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


def test_each_doc_interrupted_keeps_the_old_table_and_the_rows_done(config, tmp_path, capsys, monkeypatch):
    """Stopped part way, the table on disk was the new one's first rows: the old table was lost, the new one
    incomplete without saying so."""
    import docqa.batch.each_doc

    table = tmp_path / "table.md"
    table.write_text("| document | q1: old | q1 page |\n", encoding="utf-8")
    asked = []
    real = docqa.batch.each_doc.answer_record

    def stopped_at_the_second_document(*args, **kwargs):
        asked.append(kwargs["doc"])
        if len(asked) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(docqa.batch.each_doc, "answer_record", stopped_at_the_second_document)
    argv = ["--config", str(config), "--each-doc", "How many bakers?", "--retrieval-only", "--out", str(table)]
    assert ask_main(argv) == 130
    partial = tmp_path / "table.partial.md"
    err = capsys.readouterr().err
    assert f"the 1 row done so far is in {partial}; {table} is as it was" in err
    assert "| 1/3 [" in err and "answers/min" in err  # one answer per question and document, not 'questions'

    assert table.read_text(encoding="utf-8") == "| document | q1: old | q1 page |\n"
    assert [line.split(" | ")[0] for line in partial.read_text(encoding="utf-8").splitlines()] == [
        "| document", "| ---", "| acme-2022.pdf"]
    # Stopped again: the first run's rows, a file of questions of that name, a folder: nothing is written over
    (tmp_path / "table.partial-2.md").write_text("What was revenue?\n", encoding="utf-8")
    (tmp_path / "table.partial-3.md").mkdir()
    asked.clear()
    assert ask_main(argv) == 130
    assert f"the 1 row done so far is in {tmp_path / 'table.partial-4.md'}" in capsys.readouterr().err
    assert partial.read_text(encoding="utf-8").splitlines()[2].startswith("| acme-2022.pdf")
    assert (tmp_path / "table.partial-2.md").read_text(encoding="utf-8") == "What was revenue?\n"
    # Stopped before a row was done: nothing to keep, and no file says otherwise
    asked[:] = ["done"]
    assert ask_main(argv) == 130
    assert f"no document's row was finished; {table} is as it was" in capsys.readouterr().err
    assert not (tmp_path / "table.partial-5.md").exists()
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []  # no file left behind


def test_an_out_file_that_is_the_questions_file_by_another_name_is_refused(config, tmp_path, capsys):
    """Only the same path was refused: a hard link of the questions file as --out had answers written into it."""
    questions = tmp_path / "questions.txt"
    questions.write_text("How many bakers?\n", encoding="utf-8")
    for name, argv in (("answers.jsonl", ["batch", str(questions)]), ("table.md", ["--each-doc", "--batch", str(questions)])):
        (tmp_path / name).hardlink_to(questions)
        assert ask_main(["--config", str(config), *argv, "--retrieval-only", "--out", str(tmp_path / name)]) == 2
        assert "--out must not be the questions file" in capsys.readouterr().err
    assert questions.read_text(encoding="utf-8") == "How many bakers?\n"


def test_each_doc_writes_through_a_link_keeps_the_table_s_permissions_and_takes_a_long_name(config, tmp_path, capsys):
    """The table replaced a symbolic link by a file of its own and came back readable by everyone; a name near the
    folder's limit failed, its temporary file's name being longer still."""
    shared = tmp_path / "shared"
    shared.mkdir()
    real = shared / "real.csv"
    real.write_text("document,q1: old,q1 page\n", encoding="utf-8")
    real.chmod(0o600)
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    base = ["--config", str(config), "--each-doc", "How many bakers?", "--retrieval-only", "--out"]
    assert ask_main([*base, str(link)]) == 0
    assert link.is_symlink() and real.read_text(encoding="utf-8").startswith("document,q1: How many bakers?")
    assert oct(real.stat().st_mode & 0o777) == "0o600"
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(shared / "not-yet.csv")
    assert ask_main([*base, str(dangling)]) == 0
    assert dangling.is_symlink() and (shared / "not-yet.csv").read_text(encoding="utf-8").startswith("document,")
    long_name = tmp_path / ("x" * 246 + ".csv")  # 250 characters: a file system's limit is 255
    assert ask_main([*base, str(long_name)]) == 0
    assert long_name.read_text(encoding="utf-8").startswith("document,")
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


def test_each_doc_in_a_folder_that_takes_no_new_file_writes_its_table_in_place(config, tmp_path, capsys):
    """A table that can be written, in a folder that cannot take the file written beside it (read-only, or
    immutable), was refused, naming a hidden file the user never gave; written in place, it must say so."""
    import os
    import subprocess

    from docqa.batch.table_file import table_file

    folder = tmp_path / "tables"
    folder.mkdir()
    table = folder / "table.csv"
    table.write_text("document,q1: old,q1 page\n", encoding="utf-8")
    folder.chmod(0o555)  # enough for a user; root needs the immutable flag
    locked = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0 if os.geteuid() == 0 else True
    try:
        if not locked:
            pytest.skip("running as root where chattr +i is not allowed: no folder here refuses new files")
        assert ask_main(["--config", str(config), "--each-doc", "How many bakers?", "--retrieval-only",
                         "--out", str(table)]) == 0
        assert table.read_text(encoding="utf-8").startswith("document,q1: How many bakers?")
        assert "is written in place" in capsys.readouterr().err
        said = []
        with pytest.raises(KeyboardInterrupt):  # stopped part way: the file holds the rows done, and says so
            with table_file(str(table), "csv", say=said.append) as handle:
                handle.write("document,q1,q1 page\na.pdf,yes,1\n")
                raise KeyboardInterrupt
        assert said[-1] == f"the 1 row done so far is in {table}, written in place (its earlier table is gone)"
    finally:
        if locked and os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_each_doc_killed_exits_128_plus_the_signal_and_nohup_is_kept(config, tmp_path, capsys, monkeypatch):
    """kill and a closed terminal exited 130 as Ctrl-C; under nohup, the hang-up stopped the run all the same."""
    import os
    import signal

    import docqa.batch.each_doc

    real = docqa.batch.each_doc.answer_record
    sent = []

    def killed_at_the_second_document(*args, **kwargs):
        sent.append(kwargs["doc"])
        if len(sent) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(docqa.batch.each_doc, "answer_record", killed_at_the_second_document)
    table = tmp_path / "table.csv"
    argv = ["--config", str(config), "--each-doc", "How many bakers?", "--retrieval-only", "--out", str(table)]
    assert ask_main(argv) == 128 + signal.SIGTERM
    assert "done so far" in capsys.readouterr().err and not table.exists()
    ignored = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as nohup leaves SIGHUP, or trap '' TERM
    try:
        sent.clear()
        assert ask_main(argv) == 0
        assert table.read_text(encoding="utf-8").count("\n") == 4  # every document's row
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, ignored)


def test_a_csv_question_longer_than_csv_s_field_limit_is_read(tmp_path):
    """csv stops at 128 KiB a field: a long question in a CSV batch file was 'unexpected Error: field larger than
    field limit (131072)'."""
    from docqa.batch import read_questions

    question = "What does this clause say? " + "clause " * 20_000
    path = tmp_path / "questions.csv"
    path.write_text(f'question\n"{question}"\n', encoding="utf-8")
    assert [q.question for q in read_questions(str(path))] == [question.strip()]


def test_rows_done_stay_named_where_the_partial_name_cannot_be_made(tmp_path, capsys):
    """A name near the file system's limit leaves no room for '.partial': the rows were lost in a hidden file,
    with an 'unexpected OSError'. A question over 128 KiB (csv's field limit) broke the count of the rows."""
    from docqa.batch.table_file import table_file

    table = tmp_path / ("x" * 245 + ".csv")
    said = []
    with pytest.raises(KeyboardInterrupt):
        with table_file(str(table), "csv", say=said.append) as handle:
            handle.write(f'document,"q1: {"long question " * 10_000}",q1 page\na.pdf,yes,1\n')
            raise KeyboardInterrupt
    err = "\n".join(said)
    kept = [path for path in tmp_path.iterdir() if path.name.startswith(".docqa-")]
    assert len(kept) == 1 and f"the 1 row done so far is in {kept[0]} (" in err and "cannot be made" in err
    assert kept[0].read_text(encoding="utf-8").endswith("a.pdf,yes,1\n") and not table.exists()


def test_a_table_whose_rename_is_refused_is_copied_in(config, tmp_path, monkeypatch):
    """In a sticky folder the rename over another user's file is refused: the finished table was left in a hidden
    file, and the run ended with 'unexpected PermissionError'."""
    import os

    table = tmp_path / "table.csv"
    table.write_text("document,q1: old,q1 page\n", encoding="utf-8")
    real_replace = os.replace

    def refused(source, destination):
        if Path(destination) == table:
            raise PermissionError(1, "Operation not permitted")
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", refused)
    assert ask_main(["--config", str(config), "--each-doc", "How many bakers?", "--retrieval-only",
                     "--out", str(table)]) == 0
    assert table.read_text(encoding="utf-8").startswith("document,q1: How many bakers?")
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_the_final_rename_puts_back_the_signals_the_caller_had_blocked(tmp_path):
    """Signals are held during the rename; afterwards every signal was unblocked, those a thread of the caller's
    had blocked itself too."""
    import signal

    from docqa.batch.table_file import table_file

    mine = {signal.SIGINT, signal.SIGUSR1}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, mine)
    try:
        with table_file(str(tmp_path / "table.csv"), "csv") as handle:
            handle.write("document,q1,q1 page\na.pdf,yes,1\n")
        assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before | mine
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    assert (tmp_path / "table.csv").read_text(encoding="utf-8").endswith("a.pdf,yes,1\n")


def test_each_doc_stopped_by_sigterm_keeps_the_rows_done(tmp_path):
    """Closing the terminal (SIGHUP) or kill (SIGTERM) left a hidden .part file holding the rows, named nowhere."""
    import os
    import signal

    from docqa.batch.table_file import table_file
    from docqa.signals import stopped_as_interrupt

    table = tmp_path / "table.md"
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with stopped_as_interrupt(), table_file(str(table), "md") as handle:  # as the command line runs it
            handle.write("| document | q1 | q1 page |\n| --- | --- | --- |\n| a.pdf | yes | 1 |\n")
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between two bytecodes of this thread
                pass
    assert (tmp_path / "table.partial.md").read_text(encoding="utf-8").endswith("| a.pdf | yes | 1 |\n")
    assert not table.exists() and signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------- found by a user's review (session 35)


def test_a_resume_keeps_the_results_file_s_permissions_and_the_user_s_tmp_file(indexed, tmp_path):
    """A rerun that rewrote the file made it world-readable (a new file under the umask, renamed over it), and
    wrote over and removed a file of the user's called NAME.tmp beside it."""
    out = tmp_path / "answers.jsonl"
    questions = [Question("q1", "Acme revenue?"), Question("q2", "explode: Beta bakers?")]
    with DocQA(indexed, llm=FakeLLM(fail_on=("explode",))) as qa:
        run_batch(qa, questions, out)
    out.chmod(0o600)
    notes = tmp_path / "answers.jsonl.tmp"
    notes.write_text("my notes\n", encoding="utf-8")
    with DocQA(indexed, llm=FakeLLM()) as qa:
        run_batch(qa, questions, out)  # q2 failed: the file is rewritten without it
    assert [r["id"] for r in read_jsonl(out)] == ["q1", "q2"] and all(not r["error"] for r in read_jsonl(out))
    assert out.stat().st_mode & 0o777 == 0o600
    assert notes.read_text(encoding="utf-8") == "my notes\n"
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


def test_a_resume_keeps_the_failed_records_of_another_questions_file(indexed, tmp_path):
    """Every failed record was dropped at a rerun, those of ids this run does not ask too: never asked again."""
    out = tmp_path / "answers.jsonl"
    with DocQA(indexed, llm=FakeLLM(fail_on=("explode",))) as qa:
        run_batch(qa, [Question("x1", "explode: Beta bakers?"), Question("x2", "Acme revenue?")], out)
    with DocQA(indexed, llm=FakeLLM()) as qa:
        summary = run_batch(qa, [Question("q1", "Acme dividend?")], out)
    records = read_jsonl(out)
    assert [(r["id"], bool(r["error"])) for r in records] == [("x1", True), ("x2", False), ("q1", False)]
    assert (summary.answered, summary.skipped) == (1, 0)


def test_a_results_file_that_is_not_utf8_is_refused_as_another_program_s(tmp_path, capsys, config):
    questions = tmp_path / "q.txt"
    questions.write_text("How many bakers?\n", encoding="utf-8")
    for name in ("latin1.jsonl", "latin1.csv"):
        out = tmp_path / name
        out.write_bytes(b"caf\xe9\n")
        assert ask_main(["--config", str(config), "--batch", str(questions), "--out", str(out), "--retrieval-only"]) == 2
        assert f"error: {out} is not a docqa results file (it is not UTF-8 text)" in capsys.readouterr().err
        assert out.read_bytes() == b"caf\xe9\n"


def test_each_doc_refuses_a_table_of_the_user_s_own_headed_document(config, tmp_path, capsys):
    """Only the first cell was looked at: an inventory whose first column is "document" was replaced."""
    for name, content in [("inventory.csv", "document,owner,reviewed\nAMCOR.pdf,alice,yes\n"),
                          ("notes.md", "| document | notes |\n| --- | --- |\n| a.pdf | fine |\n"),
                          ("pairs.csv", "document,q1: revenue?,owner\nAMCOR.pdf,1,alice\n")]:
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        argv = ["--config", str(config), "--each-doc", "How many bakers?", "--retrieval-only", "--out", str(path)]
        assert ask_main(argv) == 2, name
        assert "holds something other than an each-doc table" in capsys.readouterr().err
        assert path.read_text(encoding="utf-8") == content
    table = tmp_path / "old.md"  # its own, with a question holding a bar
    table.write_text("| document | q1: revenue \\| profit? | q1 page |\n| --- | --- | --- |\n", encoding="utf-8")
    assert ask_main(["--config", str(config), "--each-doc", "How many bakers?", "--retrieval-only",
                     "--out", str(table)]) == 0


def test_a_csv_question_with_an_unquoted_comma_is_refused_with_its_row(tmp_path):
    """The question was cut at the comma, the rest dropped unsaid."""
    path = tmp_path / "questions.csv"
    path.write_text("id,question\n1,What were revenue, operating profit and net debt?\n", encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(f"{path}, row 1: more cells than the header has columns; put a "
                                                   "question that holds a comma in double quotes")):
        read_questions(path)
    path.write_text("id,question,,\n1,Revenue?,,\n", encoding="utf-8")  # a spreadsheet's empty cells are no harm
    assert read_questions(path) == [Question("1", "Revenue?")]


def test_excel_s_semicolon_csv_is_read(tmp_path):
    """Refused: 'needs a header row with a "question" column', which it has."""
    path = tmp_path / "questions.csv"
    path.write_bytes(b'\xef\xbb\xbfQuestion;ID\r\nWhat is net debt, in pounds?;a\r\n"Revenue; profit?";b\r\n')
    assert read_questions(path) == [Question("a", "What is net debt, in pounds?"), Question("b", "Revenue; profit?")]


def test_a_json_file_may_hold_an_array_of_questions(tmp_path):
    """A .json file was read as JSON Lines: a pretty-printed array was 'line 1: not valid JSON'."""
    path = tmp_path / "questions.json"
    path.write_text('[\n  {"id": "a", "question": "Revenue?", "doc": "acme*"},\n  "How many bakers?"\n]\n',
                    encoding="utf-8")
    assert read_questions(path) == [Question("a", "Revenue?", "acme*"), Question("q2", "How many bakers?")]
    path.write_text('{"question": "Revenue?"}\n{"question": "Staff?"}\n', encoding="utf-8")  # JSON Lines still
    assert [question.question for question in read_questions(path)] == ["Revenue?", "Staff?"]
    path.write_text('[{"question": "Revenue?"}, 7]', encoding="utf-8")
    with pytest.raises(InputError, match="item 2: expected a question"):
        read_questions(path)


def test_a_folder_given_as_the_questions_file_is_said_to_be_one(tmp_path):
    with pytest.raises(InputError, match=re.escape(f"{tmp_path} is a folder; the batch file is a file of questions")):
        read_questions(tmp_path)


def test_an_out_that_cannot_be_used_leaves_no_folders_behind(config, tmp_path, capsys):
    questions = tmp_path / "q.txt"
    questions.write_text("How many bakers?\n", encoding="utf-8")
    out = tmp_path / "new" / "sub" / "answers.jsonl"
    argv = ["--config", str(config), "--batch", str(questions), "--out", str(out), "--model", str(tmp_path / "no.gguf")]
    assert ask_main(argv) == 2
    assert not (tmp_path / "new").exists()


def test_a_batch_stopped_says_how_many_answers_it_kept_and_how_to_go_on(config, tmp_path, capsys, monkeypatch):
    """It said only 'interrupted' (and nothing when killed)."""
    import docqa.batch.run

    questions = tmp_path / "q.txt"
    questions.write_text("How many bakers?\nAcme revenue?\nAcme dividend?\n", encoding="utf-8")
    out = tmp_path / "answers.jsonl"
    real = docqa.batch.run.answer_record

    def stopped_at_the_third(qa, question, **kwargs):
        if question.id == "q3":
            raise KeyboardInterrupt
        return real(qa, question, **kwargs)

    monkeypatch.setattr(docqa.batch.run, "answer_record", stopped_at_the_third)
    assert ask_main(["--config", str(config), "--batch", str(questions), "--out", str(out), "--retrieval-only"]) == 130
    assert f"2 answers of this run are in {out}; the same command goes on with the rest\ninterrupted" in (
        capsys.readouterr().err)
    assert [r["id"] for r in read_jsonl(out)] == ["q1", "q2"]


def test_iter_batch_takes_one_string_as_one_question_and_raises_what_no_question_gets_past(indexed):
    """A string was asked one character at a time; k=0 or a closed DocQA gave an error record per question (a
    10,000-question run "succeeded"); an id given twice passed."""
    from docqa.errors import ClosedError

    qa = DocQA(indexed, retrieval_only=True)
    records = list(iter_batch(qa, "How many bakers did Beta employ?"))
    assert [(r["id"], r["question"]) for r in records] == [("q1", "How many bakers did Beta employ?")]
    with pytest.raises(InputError, match="k must be a whole number of 1 or more, not 0"):
        list(iter_batch(qa, ["Revenue?", "Staff?"], k=0))
    with pytest.raises(InputError, match="question 2: id 'x' appears twice"):
        list(iter_batch(qa, [{"id": "x", "question": "Revenue?"}, {"id": "x", "question": "Staff?"}]))
    qa.close()
    with pytest.raises(ClosedError):
        list(iter_batch(qa, ["Revenue?", "Staff?"]))
